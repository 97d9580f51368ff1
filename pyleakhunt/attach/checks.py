"""The safety checks of ``pyleakhunt attach``: all read ``/proc``, none
touches the target."""

from __future__ import annotations

import os
import re
import stat
import struct
from dataclasses import dataclass, field
from typing import (
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Tuple,
)

from ..process.cpython import executable_version, hexversion, libpython_version
from ..process.elf import EM_AARCH64, EM_X86_64, ElfError, ElfFile, Symbol
from ..process.proc import ProcFS, Syscall
from .base import (
    EXIT_FILE,
    EXIT_PTRACE,
    EXIT_REFUSED,
    MIN_VERSION,
    SETTLE_SECONDS,
    AttachError,
    Clock,
)

# --------------------------------------------------------------------------
# The target


#: Functions of libpython called by gdb, or checked for.
PYTHON_SYMBOLS = (
    "Py_AddPendingCall",
    "PyRun_SimpleString",
    "Py_IsInitialized",
    "_Py_IsFinalizing",
    "Py_IsFinalizing",
    "Py_Version",
)
#: Functions of libc called by gdb.
LIBC_SYMBOLS = ("mmap", "munmap")
#: The processes attach can work on.
MACHINES = (EM_X86_64, EM_AARCH64)

_LIBC = re.compile(r"/(libc\.so\.\d+|libc-[\d.]+\.so|ld-musl-[^/]*\.so[.\d]*)$")


@dataclass
class Target:
    """What /proc tells about the process to attach to."""

    pid: int
    name: str
    exe: str
    uid: int
    gid: int
    groups: Tuple[int, ...]
    #: ``(major, minor)``, or None if the process is not Python.
    version: Optional[Tuple[int, int]]
    #: ABI flags of libpython's name (``"t"``: free-threaded, ``"d"``: debug).
    abiflags: str = ""
    #: The ELF file that holds Python's symbols (libpython or the executable).
    python_image: str = ""
    #: Runtime addresses of PYTHON_SYMBOLS and LIBC_SYMBOLS found.
    addresses: Dict[str, int] = field(default_factory=dict)
    machine: int = 0

    @property
    def version_text(self) -> str:
        """``"3.11"``, or ``"unknown"``."""
        if self.version is None:
            return "unknown"
        return "%d.%d%s" % (self.version[0], self.version[1], self.abiflags)


def _ids(text: str) -> Tuple[int, ...]:
    return tuple(int(value) for value in text.split())


def _open_elf(path: str) -> Optional[ElfFile]:
    """The ELF file *path* of an x86-64 or AArch64 process, or None."""
    try:
        return ElfFile(path, MACHINES)
    except ElfError:
        return None


def inspect_target(pid: int, proc: ProcFS) -> Target:
    """Read what the checks need about *pid*; raise AttachError if not Python."""
    try:
        status = proc.status(pid)
    except OSError:
        raise AttachError("no process with PID %d" % pid, EXIT_REFUSED) from None
    name = status.get("Name", "?")
    uids = _ids(status.get("Uid", "0"))
    gids = _ids(status.get("Gid", "0"))
    try:
        exe = proc.exe(pid)
        mapped = proc.mapped_files(pid)
    except OSError as exc:
        if not proc.exists(pid):
            raise AttachError("no process with PID %d" % pid, EXIT_REFUSED) from None
        raise AttachError(
            "cannot read the memory map of PID %d (%s): %s"
            % (pid, name, exc.strerror or exc),
            EXIT_PTRACE,
        ) from None
    target = Target(
        pid=pid,
        name=name,
        exe=exe,
        uid=uids[1] if len(uids) > 1 else uids[0],
        gid=gids[1] if len(gids) > 1 else gids[0],
        groups=_ids(status.get("Groups", "")),
        version=None,
    )
    libpython = next((m for m in mapped if libpython_version(m.name)), None)
    exe_map = next((m for m in mapped if m.path == exe), None)
    python_map = libpython or exe_map
    image = None
    symbols: Dict[str, Symbol] = {}
    if python_map is not None:
        image = _open_elf(proc.image(pid, python_map))
        if image is not None:
            target.machine = image.machine
            bias = image.load_bias(python_map.start)
            symbols = image.dynamic_symbols(PYTHON_SYMBOLS)
            for name, symbol in symbols.items():
                target.addresses[name] = symbol.value + bias
    if libpython is None and "Py_AddPendingCall" not in target.addresses:
        raise AttachError(
            "PID %d (%s) is not a Python process: no libpython is mapped and "
            "%s has no Python symbols" % (pid, name, exe),
            EXIT_REFUSED,
        )
    assert python_map is not None
    target.python_image = python_map.path
    named = libpython_version(libpython.name) if libpython else None
    if named:
        target.version = named[:2]
        target.abiflags = named[2]
    elif image is not None:
        version = hexversion(image, symbols.get("Py_Version"))
        if version is not None:
            target.version = (version >> 24, (version >> 16) & 0xFF)
    if target.version is None:
        named = executable_version(exe)
        if named:
            target.version = named[:2]
            target.abiflags = named[2]
    libc = next((m for m in mapped if _LIBC.search(m.name)), None)
    libc_image = _open_elf(proc.image(pid, libc)) if libc else None
    if libc is not None and libc_image is not None:
        bias = libc_image.load_bias(libc.start)
        for name, symbol in libc_image.dynamic_symbols(LIBC_SYMBOLS).items():
            target.addresses[name] = symbol.value + bias
    return target


# --------------------------------------------------------------------------
# Safety checks (none of them touches the target)

#: Per architecture: system calls in which a waiting thread cannot be inside
#: the pending-call lock, the allocator or any other lock of ours, so gdb
#: may borrow it for a call; and the calls that create a process.
SYSCALLS = {
    EM_X86_64: {
        "blocking": {
            0: "read",
            7: "poll",
            23: "select",
            34: "pause",
            35: "nanosleep",
            43: "accept",
            45: "recvfrom",
            47: "recvmsg",
            61: "wait4",
            128: "rt_sigtimedwait",
            130: "rt_sigsuspend",
            202: "futex",
            230: "clock_nanosleep",
            232: "epoll_wait",
            247: "waitid",
            270: "pselect6",
            271: "ppoll",
            281: "epoll_pwait",
            288: "accept4",
            299: "recvmmsg",
            441: "epoll_pwait2",
            449: "futex_waitv",
        },
        "fork": {56: "clone", 57: "fork", 58: "vfork", 435: "clone3"},
    },
    EM_AARCH64: {
        "blocking": {
            22: "epoll_pwait",
            63: "read",
            72: "pselect6",
            73: "ppoll",
            95: "waitid",
            98: "futex",
            101: "nanosleep",
            115: "clock_nanosleep",
            133: "rt_sigsuspend",
            137: "rt_sigtimedwait",
            202: "accept",
            207: "recvfrom",
            212: "recvmsg",
            242: "accept4",
            243: "recvmmsg",
            260: "wait4",
            441: "epoll_pwait2",
            449: "futex_waitv",
        },
        "fork": {220: "clone", 435: "clone3"},
    },
}
CLONE_VFORK = 0x4000
CLONE_THREAD = 0x10000
#: ``PF_FORKNOEXEC`` in /proc/PID/stat's flags: forked, has not called exec.
PF_FORKNOEXEC = 0x40
CAP_SYS_PTRACE = 19


def syscall_name(machine: int, number: int) -> str:
    """A readable name for system call *number*."""
    table = SYSCALLS.get(machine, {})
    for names in table.values():
        if number in names:
            return names[number] + "()"
    return "system call %d" % number


def check_state(pid: int, proc: ProcFS, settle: Clock) -> None:
    """Refuse a target that is stopped, traced, exiting or stuck in the kernel."""
    while True:
        stuck = None
        for tid in proc.task_ids(pid):
            try:
                status = proc.status(pid, None if tid == pid else tid)
            except OSError:
                if tid == pid:
                    raise AttachError(
                        "no process with PID %d" % pid, EXIT_REFUSED
                    ) from None
                continue  # a thread that just ended
            state = status.get("State", "?")[:1]
            tracer = int(status.get("TracerPid", "0") or 0)
            if tracer:
                tracer_name = proc.read_or("%d/comm" % tracer, "?").strip()
                raise AttachError(
                    "PID %d is being traced by PID %d (%s); pyleakhunt does not "
                    "attach while a debugger or tracer is attached"
                    % (pid, tracer, tracer_name),
                    EXIT_REFUSED,
                )
            if state == "T":
                raise AttachError(
                    "PID %d is stopped (State T, by SIGSTOP or Ctrl-Z); it was "
                    "left as it is: resume it first (kill -CONT %d)" % (pid, pid),
                    EXIT_REFUSED,
                )
            if state == "t":
                raise AttachError(
                    "PID %d is stopped by a debugger (State t); pyleakhunt does "
                    "not attach while a debugger is attached" % pid,
                    EXIT_REFUSED,
                )
            if state in "ZX" and tid == pid:
                raise AttachError(
                    "PID %d has exited (State %s)" % (pid, state), EXIT_REFUSED
                )
            if state == "D":
                stuck = tid
        if stuck is None:
            return
        if not settle.waiting():
            raise AttachError(
                "thread %d of PID %d has been in uninterruptible sleep (State D: "
                "blocked in the kernel, often on I/O) for %.1f s; gdb could not "
                "stop it cleanly: try again later" % (stuck, pid, settle.seconds),
                EXIT_REFUSED,
            )


#: How far above a thread's stack pointer the struct clone_args that it
#: passes to clone3() can be: in the frame of the function that called.
#: gdb's script (gdb_script.py) applies the same rule to a stopped target.
CLONE_ARGS_REACH = 64 * 1024


def _creates_thread(pid: int, name: str, call: Syscall, proc: ProcFS) -> bool:
    """Whether a clone() or clone3() in progress creates a thread."""
    args = call.args
    if name == "clone":
        return bool(args) and bool(args[0] & CLONE_THREAD)
    if name != "clone3" or not args:
        return False
    if call.sp is not None and not 0 <= args[0] - call.sp < CLONE_ARGS_REACH:
        # A thread just made, not scheduled yet: the kernel shows its
        # creator's registers but its own stack, which the struct is not
        # on.  A process's child would be no thread of the target.
        return True
    flags = proc.read_memory(pid, args[0], 8)  # struct clone_args.flags
    return bool(flags) and bool(struct.unpack("<Q", flags)[0] & CLONE_THREAD)


def _forking_reason(pid: int, proc: ProcFS, machine: int) -> Optional[str]:
    """Why *pid* is in the middle of a fork now, or None."""
    forks = SYSCALLS.get(machine, SYSCALLS[EM_X86_64])["fork"]
    for tid in proc.task_ids(pid):
        call = proc.syscall(pid, tid)
        if call is None or call.number not in forks:
            continue
        name = forks[call.number]
        if _creates_thread(pid, name, call, proc):
            continue  # creating a thread (pthread_create), not a process
        return "thread %d is in %s()" % (tid, name)
    try:
        fields = proc.stat_fields(pid)
        flags, ppid, started = int(fields[6]), int(fields[1]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None
    if not flags & PF_FORKNOEXEC:
        return None
    for tid in proc.task_ids(ppid) if ppid > 1 else []:
        call = proc.syscall(ppid, tid)
        if call is None or call.number not in forks:
            continue
        name = forks[call.number]
        if name == "vfork" or (
            name == "clone" and call.args[:1] and call.args[0] & CLONE_VFORK
        ):
            return (
                "it is a vfork() child that has not called exec() yet: it "
                "shares its parent's memory"
            )
    try:
        uptime = float(proc.read("uptime").split()[0])
        age = uptime - started / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    if age < SETTLE_SECONDS:
        return "it was forked %.2f s ago and has not called exec() yet" % age
    return None


def check_not_forking(target: Target, proc: ProcFS, settle: Clock) -> None:
    """Refuse a target in the middle of fork(), or a child not yet exec'd.

    At that moment the forking thread holds locks (the allocator's, the
    import lock, pyleakhunt's own) in its ``atfork`` handlers; a child made
    then could inherit the queued request (the bootstrap ignores it there:
    its pid is not the one asked for); and a vfork child shares its
    parent's memory and stack.  Forks are short, so the check waits up to
    `SETTLE_SECONDS` first.  gdb checks again while the target is stopped.
    """
    while True:
        reason = _forking_reason(target.pid, proc, target.machine)
        if reason is None:
            return
        if not settle.waiting():
            raise AttachError(
                "PID %d is in the middle of a fork (%s); try again"
                % (target.pid, reason),
                EXIT_REFUSED,
            )


def check_version(target: Target) -> None:
    """Refuse a Python that pyleakhunt does not support."""
    if target.version is None:
        raise AttachError(
            "cannot tell which Python version PID %d (%s) runs; it maps no "
            "libpython3.X and its executable is not named python3.X"
            % (target.pid, target.exe),
            EXIT_REFUSED,
        )
    if target.version < MIN_VERSION:
        raise AttachError(
            "PID %d runs Python %s; pyleakhunt supports Python %d.%d and later"
            % ((target.pid, target.version_text) + MIN_VERSION),
            EXIT_REFUSED,
        )
    if target.machine not in (0,) + MACHINES:
        raise AttachError(
            "PID %d is not an x86-64 or AArch64 process" % target.pid, EXIT_REFUSED
        )


def _capabilities(proc: ProcFS) -> int:
    """Our effective capabilities, as a bit mask."""
    for line in proc.read_or("self/status").splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _own_uid(proc: ProcFS) -> int:
    for line in proc.read_or("self/status").splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # effective
    return os.geteuid()


def _is_descendant(pid: int, ancestor: int, proc: ProcFS) -> bool:
    seen = set()
    while pid > 1 and pid not in seen:
        seen.add(pid)
        try:
            pid = int(proc.status(pid).get("PPid", "0"))
        except (OSError, ValueError):
            return False
        if pid == ancestor:
            return True
    return False


def check_ptrace_permitted(target: Target, proc: ProcFS, own_pid: int) -> None:
    """Refuse early when the kernel would refuse ptrace (or process_vm_writev).

    The same rules as the kernel's ``__ptrace_may_access`` and Yama's:
    ``kernel.yama.ptrace_scope`` 3 forbids attaching, 2 needs
    CAP_SYS_PTRACE, 1 allows only descendants without it; without
    CAP_SYS_PTRACE the target must run as our user and be dumpable.
    """
    try:
        scope = int(proc.read("sys/kernel/yama/ptrace_scope").strip())
    except (OSError, ValueError):
        scope = 0  # no Yama: classic rules
    privileged = bool(_capabilities(proc) >> CAP_SYS_PTRACE & 1)
    if scope >= 3:
        raise AttachError(
            "ptrace is disabled on this machine (kernel.yama.ptrace_scope = 3); "
            "no process can be attached until a reboot",
            EXIT_PTRACE,
        )
    if scope == 2 and not privileged:
        raise AttachError(
            "only a process with CAP_SYS_PTRACE may attach "
            "(kernel.yama.ptrace_scope = 2); run pyleakhunt as root",
            EXIT_PTRACE,
        )
    if scope == 1 and not privileged and not _is_descendant(target.pid, own_pid, proc):
        raise AttachError(
            "kernel.yama.ptrace_scope = 1 allows attaching only to your own "
            "child processes; run pyleakhunt as root (or with CAP_SYS_PTRACE), "
            "or set kernel.yama.ptrace_scope = 0",
            EXIT_PTRACE,
        )
    if privileged:
        return
    uid = _own_uid(proc)
    if target.uid != uid:
        raise AttachError(
            "PID %d runs as uid %d, and pyleakhunt as uid %d; attach as that "
            "user or as root" % (target.pid, target.uid, uid),
            EXIT_PTRACE,
        )
    try:
        owner = os.stat(proc.path("%d" % target.pid)).st_uid
    except OSError:
        owner = target.uid
    if owner != target.uid:
        raise AttachError(
            "PID %d is not dumpable (it changed user, or called "
            "prctl(PR_SET_DUMPABLE, 0)); only root can attach to it" % target.pid,
            EXIT_PTRACE,
        )


def writable_by(path: str, uid: int, gids: Iterable[int]) -> bool:
    """Whether a process of *uid* and *gids* may create or replace *path*."""
    directory = os.path.dirname(path) or "/"
    try:
        info = os.stat(directory)
        readonly = os.statvfs(directory).f_flag & os.ST_RDONLY
    except OSError:
        return False
    if readonly or not stat.S_ISDIR(info.st_mode):
        return False
    if uid == 0:
        return True
    if info.st_uid == uid:
        bits = info.st_mode >> 6
    elif info.st_gid in set(gids):
        bits = info.st_mode >> 3
    else:
        bits = info.st_mode
    return bits & 0o3 == 0o3  # write and search


def check_output(target: Target, path: str, proc: ProcFS) -> None:
    """Refuse an output path that the target's user cannot write."""
    seen_from_here = proc.target_file(target.pid, path)
    if os.path.isdir(seen_from_here):
        raise AttachError("%s is a directory" % path, EXIT_FILE)
    if not writable_by(seen_from_here, target.uid, (target.gid,) + target.groups):
        raise AttachError(
            "PID %d (uid %d) cannot write %s: its directory is missing or not "
            "writable by that user" % (target.pid, target.uid, path),
            EXIT_FILE,
        )


def _interpreter_options(argv: Sequence[str]) -> Tuple[set, List[str]]:
    """The one-letter options and the ``-X`` options of a Python command line.

    Only the options before the script, ``-c`` or ``-m`` are Python's own;
    one-letter options may be grouped (``-IX dev``).
    """
    letters: set = set()
    xoptions: List[str] = []
    args = list(argv[1:])
    while args:
        arg = args.pop(0)
        if arg == "--" or not arg.startswith("-") or arg == "-":
            break
        if arg.startswith("--"):
            continue  # --check-hash-based-pycs takes a value; it is rare
        for i, letter in enumerate(arg[1:], 1):
            if letter in "XW":
                value = arg[i + 1 :] or (args.pop(0) if args else "")
                if letter == "X":
                    xoptions.append(value)
                break
            letters.add(letter)
            if letter in "cm":
                return letters, xoptions
    return letters, xoptions


def remote_debug_disabled(pid: int, proc: ProcFS) -> Optional[str]:
    """How process *pid* turned off remote debugging (PEP 768), or None.

    Read from its command line and initial environment, the way Python
    3.14+ reads them at start-up: ``-X disable-remote-debug`` (any value), or
    ``PYTHON_DISABLE_REMOTE_DEBUG`` set to anything, even empty, unless
    ``-E`` or ``-I`` makes it ignore the environment.  A Python built
    ``--without-remote-debug`` is seen only when ``sys.remote_exec`` says so.
    """
    argv = [arg for arg in proc.read_or("%d/cmdline" % pid).split("\0") if arg]
    letters, xoptions = _interpreter_options(argv)
    for option in xoptions:
        if option.partition("=")[0] == "disable-remote-debug":
            return "it was started with -X %s" % option
    if letters & {"E", "I"}:
        return None
    environ = proc.read_or("%d/environ" % pid).split("\0")
    if any(item.startswith("PYTHON_DISABLE_REMOTE_DEBUG=") for item in environ):
        return "PYTHON_DISABLE_REMOTE_DEBUG is set in its environment"
    return None
