"""``pyleakhunt attach``: trace a running Python process without restarting it.

Usage::

    pyleakhunt attach PID [--nframe N] [--sample BYTES]   start tracing
    pyleakhunt attach PID --snapshot FILE [--full]        write a snapshot
    pyleakhunt attach PID --watch S [--duration T] [-o FILE] [--wait]
                                                          record a timeline
    pyleakhunt attach PID --status                        what the target does
    pyleakhunt attach PID --detach                        stop tracing

(also ``python -m pyleakhunt.attach ...``).  Every file is written by the
target itself, so FILE must be writable by the target's user; it is a path
as the target sees it.

How the code gets in (docs/attach.md has the full story):

1. Checks, before touching the target, all from ``/proc``: the process
   exists, is Python (a ``libpython`` mapping, or Python's symbols in its
   executable), which version; it is not stopped, not traced, not forking;
   ptrace is permitted; the output file is writable by the target's user.
2. The request goes into a small Python program (`_attach_bootstrap`).  On
   Python 3.10 to 3.13, gdb attaches, picks a thread that is waiting in a
   system call (so it holds no lock we need), maps one anonymous region
   (``mmap``), writes the program there and queues it with
   ``Py_AddPendingCall(PyRun_SimpleString, program)``, then detaches: the
   target is stopped for about 0.1 s and runs none of our code on a thread
   it did not expect.  The interpreter then runs the program on its main
   thread, between two bytecodes, like a signal handler.  On Python 3.14 and
   later, ``sys.remote_exec`` (PEP 768) queues a script file without gdb and
   without stopping the target; that file stays until the target has run it.
   A target that disabled remote debugging is refused (``--method gdb``
   overrides).
3. The program claims a token file, does the work, writes its result to a
   file that this command reads.  If the main thread never gets there (a
   thread holds the GIL in a long C call), the command gives up in time and
   deletes the token: the queued program, whenever it runs, finds no token
   and does nothing.
4. After gdb detaches, the target's state is checked again: it must be
   running, not stopped.

Exit codes::

    0    success
    1    attaching failed for another reason (gdb's error is shown)
    2    bad usage
    3    the output file cannot be written by the target's user
    4    refused: no such process, not Python, unsupported version, stopped,
         traced, forking, shutting down, remote debugging disabled (3.14+),
         pyleakhunt not importable there
    5    ptrace is not permitted (kernel.yama.ptrace_scope, other user, EPERM)
    6    gdb is missing (or has no Python support)
    7    timed out: the target's main thread did not run Python code in time
         (for example, another thread holds the GIL in a long C call)
    8    the target ran the command and reported an error (for example:
         not tracing yet, sampling not supported by its pyleakhunt)
    130  interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from .report import exit_codes_text
from .snapshot import format_size
from .units import parse_size

# --------------------------------------------------------------------------
# Exit codes and errors

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_FILE = 3
EXIT_REFUSED = 4
EXIT_PTRACE = 5
EXIT_NO_GDB = 6
EXIT_TIMEOUT = 7
EXIT_TARGET_ERROR = 8
EXIT_INTERRUPTED = 130

#: Every exit code of ``pyleakhunt attach`` and what it means.
EXIT_CODES: Dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FAILED: "attaching failed for another reason (gdb's error is shown)",
    EXIT_USAGE: "bad usage",
    EXIT_FILE: "the output file cannot be written by the target's user",
    EXIT_REFUSED: (
        "refused: no such process, not Python, unsupported version, stopped, "
        "traced, forking, shutting down, remote debugging disabled, pyleakhunt "
        "not importable there"
    ),
    EXIT_PTRACE: "ptrace is not permitted (kernel.yama.ptrace_scope, other user)",
    EXIT_NO_GDB: "gdb is missing (or has no Python support)",
    EXIT_TIMEOUT: (
        "timed out: the target's main thread did not run Python code in time "
        "(for example, another thread holds the GIL in a long C call)"
    ),
    EXIT_TARGET_ERROR: "the target ran the command and reported an error",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

#: Seconds a command may take, all phases together, unless --timeout says
#: otherwise.  With Python's start-up before it, and the polite stop of a
#: gdb that overran after it (up to twice `GDB_STOP_GRACE`), a command
#: ends within 10 s.
DEFAULT_TIMEOUT = 7.0
#: Of the timeout, at most this much goes to gdb (it needs about 0.3 s).
GDB_BUDGET = 4.0
#: Seconds gdb gets after each polite signal (SIGINT, then SIGTERM).
GDB_STOP_GRACE = 1.5
#: How long a transient state (forking, uninterruptible sleep) may last
#: before the command refuses instead of waiting.
SETTLE_SECONDS = 1.0
#: Seconds to wait for a result the target has started but not finished.
CLAIMED_GRACE = 0.5
#: The oldest target Python; 3.14 and later use sys.remote_exec.
MIN_VERSION = (3, 10)
REMOTE_EXEC_VERSION = (3, 14)


class AttachError(Exception):
    """A failure reported as one line, with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Clock:
    """A deadline, with the sleep and time functions that tests replace."""

    def __init__(
        self,
        seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        step: float = 0.05,
    ) -> None:
        self.seconds = seconds
        self.monotonic = monotonic
        self.sleep = sleep
        self.step = step
        self.deadline = monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.deadline - self.monotonic())

    def waiting(self) -> bool:
        """Sleep one step and return True, or False if the time is up."""
        if self.remaining() <= 0:
            return False
        self.sleep(min(self.step, self.remaining()))
        return True


def _note(message: str) -> None:
    sys.stderr.write("pyleakhunt: %s\n" % message)
    sys.stderr.flush()


def _warn(message: str) -> None:
    sys.stderr.write("pyleakhunt: warning: %s\n" % message)
    sys.stderr.flush()


def _error(message: str) -> None:
    sys.stderr.write("pyleakhunt: error: %s\n" % message)
    sys.stderr.flush()


# --------------------------------------------------------------------------
# Reading /proc


@dataclass(frozen=True)
class MappedFile:
    """One file mapped in a process: its path and its mapping at offset 0."""

    path: str
    start: int
    end: int

    @property
    def deleted(self) -> bool:
        """Whether the file was deleted or replaced since (an upgrade)."""
        return self.path.endswith(" (deleted)")

    @property
    def name(self) -> str:
        """The path without the kernel's `` (deleted)`` mark."""
        return self.path[: -len(" (deleted)")] if self.deleted else self.path


class ProcFS:
    """Read-only access to ``/proc``, with files that tests may override.

    *overrides* maps a path relative to *root* (``"sys/kernel/yama/
    ptrace_scope"``, ``"1234/status"``) to its text, or to an exception to
    raise when it is read.  Everything else is read from *root*.
    """

    def __init__(
        self,
        root: str = "/proc",
        overrides: Optional[Mapping[str, Union[str, BaseException]]] = None,
    ) -> None:
        self.root = root
        self.overrides = dict(overrides or {})

    def path(self, relative: str) -> str:
        """The real path of *relative*."""
        return os.path.join(self.root, relative)

    def read(self, relative: str) -> str:
        """The text of *relative* (raises OSError like ``open``)."""
        if relative in self.overrides:
            value = self.overrides[relative]
            if isinstance(value, BaseException):
                raise value
            return value
        with open(self.path(relative), encoding="utf-8", errors="replace") as f:
            return f.read()

    def read_or(self, relative: str, default: str = "") -> str:
        """The text of *relative*, or *default* if it cannot be read."""
        try:
            return self.read(relative)
        except OSError:
            return default

    def exists(self, pid: int) -> bool:
        """Whether process *pid* exists."""
        try:
            self.read("%d/status" % pid)
            return True
        except OSError:
            return False

    def status(self, pid: int, tid: Optional[int] = None) -> Dict[str, str]:
        """``/proc/PID/status`` (or a thread's) as a dict of its fields."""
        relative = (
            "%d/status" % pid if tid is None else "%d/task/%d/status" % (pid, tid)
        )
        fields = {}
        for line in self.read(relative).splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        return fields

    def stat_fields(self, pid: int) -> List[str]:
        """``/proc/PID/stat`` split so that index k is field k+3 (man proc)."""
        text = self.read("%d/stat" % pid)
        return text[text.rindex(")") + 2 :].split()

    def task_ids(self, pid: int) -> List[int]:
        """The threads of *pid*, the main thread first."""
        key = "%d/task" % pid
        if key in self.overrides:
            names = self.read(key).split()
        else:
            try:
                names = os.listdir(self.path(key))
            except OSError:
                names = []
        tids = sorted(int(name) for name in names if name.isdigit())
        return sorted(tids, key=lambda tid: tid != pid) or [pid]

    def syscall(self, pid: int, tid: int) -> Optional[Tuple[int, List[int]]]:
        """The system call thread *tid* waits in, with its arguments.

        None when the thread runs user code, or cannot be read.
        """
        fields = self.read_or("%d/task/%d/syscall" % (pid, tid)).split()
        if not fields or not fields[0].lstrip("-").isdigit():
            return None  # "running", or unreadable
        number = int(fields[0])
        if number < 0:
            return None  # stopped in user space
        return number, [int(arg, 16) for arg in fields[1:7]]

    def read_memory(self, pid: int, address: int, size: int) -> Optional[bytes]:
        """*size* bytes of *pid*'s memory at *address*, or None.

        Through ``/proc/PID/mem``, which needs the same permission as ptrace
        but does not stop the process.
        """
        try:
            with open(self.path("%d/mem" % pid), "rb", buffering=0) as f:
                f.seek(address)
                data = f.read(size)
        except (OSError, OverflowError, ValueError):
            return None
        return data if len(data) == size else None

    def mapped_files(self, pid: int) -> List[MappedFile]:
        """The files mapped in *pid*, each with its lowest mapping at offset 0."""
        found: Dict[str, MappedFile] = {}
        for line in self.read("%d/maps" % pid).splitlines():
            parts = line.split(None, 5)
            if len(parts) < 6 or not parts[5].startswith("/"):
                continue
            if int(parts[2], 16) == 0 and parts[5] not in found:
                start, end = (int(value, 16) for value in parts[0].split("-"))
                found[parts[5]] = MappedFile(parts[5], start, end)
        return list(found.values())

    def image(self, pid: int, mapped: MappedFile) -> str:
        """A path from which the file *mapped* in *pid* can be read.

        A file deleted since it was mapped (Python upgraded under a process
        that has run for days) is still readable through ``map_files``.
        """
        if mapped.deleted:
            return self.path("%d/map_files/%x-%x" % (pid, mapped.start, mapped.end))
        return self.target_file(pid, mapped.path)

    def exe(self, pid: int) -> str:
        """The path of *pid*'s executable."""
        key = "%d/exe" % pid
        if key in self.overrides:
            return self.read(key).strip()
        return os.readlink(self.path(key))

    def target_file(self, pid: int, path: str) -> str:
        """A path in *pid*'s view of the filesystem, openable from here.

        Through ``/proc/PID/root``, so that a target in a container (another
        mount namespace, a chroot, systemd's PrivateTmp) is seen as it sees
        itself.  Falls back to *path* when that is not accessible.
        """
        root = self.path("%d/root" % pid)
        if self.root == "/proc" and os.path.isdir(root + "/"):
            return root + path
        return path


# --------------------------------------------------------------------------
# ELF: the symbols we call, without loading the target's libraries here


@dataclass
class ElfImage:
    """What we need from an ELF file: its dynamic symbols and load segments."""

    machine: int
    symbols: Dict[str, int]
    #: (p_vaddr, p_offset, p_filesz) of each PT_LOAD segment.
    loads: List[Tuple[int, int, int]]

    def load_bias(self, first_page: int) -> int:
        """Runtime address minus link-time address, given the mapped offset 0."""
        lowest = min((vaddr - offset for vaddr, offset, _ in self.loads), default=0)
        return first_page - (lowest & ~0xFFF)


ELF_X86_64 = 62
ELF_AARCH64 = 183


def read_elf(path: str, wanted: Iterable[str]) -> Optional[ElfImage]:
    """The *wanted* dynamic symbols of the 64-bit little-endian ELF *path*.

    None if the file is not such an ELF file.  Only ``.dynsym`` is read: the
    functions we call are exported, and it is small.
    """
    wanted = set(wanted)
    try:
        with open(path, "rb") as f:
            header = f.read(64)
            if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
                return None
            machine = struct.unpack_from("<H", header, 0x12)[0]
            phoff, shoff = struct.unpack_from("<QQ", header, 0x20)
            phentsize, phnum, shentsize, shnum = struct.unpack_from(
                "<HHHH", header, 0x36
            )
            loads = []
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for i in range(phnum):
                p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(
                    "<IIQQQQ", table, i * phentsize
                )
                if p_type == 1:  # PT_LOAD
                    loads.append((p_vaddr, p_offset, p_filesz))
            f.seek(shoff)
            sections = f.read(shentsize * shnum)
            symbols: Dict[str, int] = {}
            for i in range(shnum):
                fields = struct.unpack_from("<IIQQQQII", sections, i * shentsize)
                if fields[1] != 11:  # SHT_DYNSYM
                    continue
                offset, size, link = fields[4], fields[5], fields[6]
                strtab = struct.unpack_from("<IIQQQQ", sections, link * shentsize)
                f.seek(strtab[4])
                names = f.read(strtab[5])
                f.seek(offset)
                table = f.read(size)
                for j in range(0, size - 23, 24):
                    name, _, _, shndx, value = struct.unpack_from("<IBBHQ", table, j)
                    if shndx == 0 or not value:
                        continue  # undefined here
                    end = names.find(b"\0", name)
                    text = names[name:end].decode("ascii", "replace")
                    if text in wanted and text not in symbols:
                        symbols[text] = value
            return ElfImage(machine, symbols, loads)
    except (OSError, struct.error, ValueError, IndexError):
        return None


def read_elf_bytes(path: str, image: ElfImage, vaddr: int, size: int) -> bytes:
    """*size* bytes of *path* at link-time address *vaddr* (b"" if unmapped)."""
    for seg_vaddr, seg_offset, seg_filesz in image.loads:
        if seg_vaddr <= vaddr and vaddr + size <= seg_vaddr + seg_filesz:
            try:
                with open(path, "rb") as f:
                    f.seek(seg_offset + vaddr - seg_vaddr)
                    return f.read(size)
            except OSError:
                return b""
    return b""


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

_LIBPYTHON = re.compile(r"/libpython(\d+)\.(\d+)([a-z]*)\.so")
_PYTHON_EXE = re.compile(r"python(\d+)\.(\d+)([a-z]*)$")
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
    libpython = next((m for m in mapped if _LIBPYTHON.search(m.name)), None)
    exe_map = next((m for m in mapped if m.path == exe), None)
    python_map = libpython or exe_map
    image = None
    if python_map is not None:
        image = read_elf(proc.image(pid, python_map), PYTHON_SYMBOLS)
        if image is not None:
            target.machine = image.machine
            bias = image.load_bias(python_map.start)
            for symbol, value in image.symbols.items():
                target.addresses[symbol] = value + bias
    if libpython is None and "Py_AddPendingCall" not in target.addresses:
        raise AttachError(
            "PID %d (%s) is not a Python process: no libpython is mapped and "
            "%s has no Python symbols" % (pid, name, exe),
            EXIT_REFUSED,
        )
    assert python_map is not None
    target.python_image = python_map.path
    match = _LIBPYTHON.search(libpython.name) if libpython else None
    if match:
        target.version = (int(match.group(1)), int(match.group(2)))
        target.abiflags = match.group(3)
    elif image is not None and "Py_Version" in image.symbols:
        raw = read_elf_bytes(
            proc.image(pid, python_map),
            image,
            image.symbols["Py_Version"],
            4,
        )
        if len(raw) == 4:
            hexversion = struct.unpack("<I", raw)[0]
            target.version = (hexversion >> 24, (hexversion >> 16) & 0xFF)
    if target.version is None:
        match = _PYTHON_EXE.search(os.path.basename(exe).replace(" (deleted)", ""))
        if match:
            target.version = (int(match.group(1)), int(match.group(2)))
            target.abiflags = match.group(3)
    libc = next((m for m in mapped if _LIBC.search(m.name)), None)
    libc_image = read_elf(proc.image(pid, libc), LIBC_SYMBOLS) if libc else None
    if libc is not None and libc_image is not None:
        bias = libc_image.load_bias(libc.start)
        for symbol, value in libc_image.symbols.items():
            target.addresses[symbol] = value + bias
    return target


# --------------------------------------------------------------------------
# Safety checks (none of them touches the target)

#: Per architecture: system calls in which a waiting thread cannot be inside
#: the pending-call lock, the allocator or any other lock of ours, so gdb
#: may borrow it for a call; and the calls that create a process.
_SYSCALLS = {
    ELF_X86_64: {
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
    ELF_AARCH64: {
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
    table = _SYSCALLS.get(machine, {})
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


def _clone_flags(pid: int, name: str, args: List[int], proc: ProcFS) -> Optional[int]:
    """The flags of a clone() or clone3() call in progress (None: unknown)."""
    if name == "clone":
        return args[0] if args else None
    if name == "clone3" and args:
        flags = proc.read_memory(pid, args[0], 8)  # struct clone_args.flags
        return struct.unpack("<Q", flags)[0] if flags else None
    return None


def _forking_reason(pid: int, proc: ProcFS, machine: int) -> Optional[str]:
    """Why *pid* is in the middle of a fork now, or None."""
    forks = _SYSCALLS.get(machine, _SYSCALLS[ELF_X86_64])["fork"]
    for tid in proc.task_ids(pid):
        call = proc.syscall(pid, tid)
        if call is None or call[0] not in forks:
            continue
        name = forks[call[0]]
        flags = _clone_flags(pid, name, call[1], proc)
        if flags is not None and flags & CLONE_THREAD:
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
        if call is None or call[0] not in forks:
            continue
        name = forks[call[0]]
        if name == "vfork" or (
            name == "clone" and call[1][:1] and call[1][0] & CLONE_VFORK
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
    if target.machine not in (0, ELF_X86_64, ELF_AARCH64):
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


# --------------------------------------------------------------------------
# How to get in


@dataclass
class Environment:
    """What the command reads from the machine; tests replace parts of it."""

    proc: ProcFS = field(default_factory=ProcFS)
    #: The PATH where gdb is looked for (None: this process's PATH).
    path: Optional[str] = None
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    wall_clock: Callable[[], float] = time.time
    own_pid: int = field(default_factory=os.getpid)
    python: Tuple[int, int] = tuple(sys.version_info[:2])  # type: ignore[assignment]
    remote_exec: Optional[Callable[[int, str], None]] = getattr(
        sys, "remote_exec", None
    )

    def clock(self, seconds: float, step: float = 0.05) -> Clock:
        """A `Clock` of *seconds* on this environment's time."""
        return Clock(seconds, self.monotonic, self.sleep, step)

    def which_gdb(self) -> Optional[str]:
        """The gdb executable, or None."""
        return shutil.which("gdb", path=self.path)


def choose_method(
    target_version: Tuple[int, int],
    client_version: Tuple[int, int],
    remote_exec_available: bool,
    gdb: Optional[str],
    requested: str = "auto",
    remote_debug_disabled: Optional[str] = None,
) -> str:
    """``"gdb"`` or ``"remote_exec"`` for a target of *target_version*.

    ``sys.remote_exec`` (Python 3.14+) needs no debugger and never stops the
    target, so it is preferred when it can work: the target is 3.14+, this
    Python has it and is the same version (it reads the target's interpreter
    structures by its own layout).  Otherwise gdb, whose
    ``Py_AddPendingCall`` works on every version.

    *remote_debug_disabled* says how a 3.14+ target turned remote debugging
    off (`remote_debug_disabled`), or is None.  Its owner said "no remote
    debugger", so the command refuses (exit 4) unless gdb is asked for by
    name.  Raises AttachError (exit 6) when no method is possible.
    """
    modern = target_version >= REMOTE_EXEC_VERSION
    if modern and remote_debug_disabled and requested != "gdb":
        raise AttachError(
            "remote debugging is disabled in the target (%s), so "
            "sys.remote_exec cannot attach; --method gdb attaches with a "
            "debugger anyway" % remote_debug_disabled,
            EXIT_REFUSED,
        )
    can_remote = (
        modern and remote_exec_available and client_version[:2] == target_version[:2]
    )
    if requested == "remote_exec":
        if can_remote:
            return "remote_exec"
        raise AttachError(
            "sys.remote_exec cannot attach to this target: it needs Python "
            "3.14 or later on both sides, the same version (target %d.%d, "
            "pyleakhunt's %d.%d)" % (target_version + client_version[:2]),
            EXIT_REFUSED,
        )
    if requested == "auto" and can_remote:
        return "remote_exec"
    if gdb is None:
        hint = ""
        if modern and requested == "auto":
            hint = (
                ", or run pyleakhunt with Python %d.%d to use sys.remote_exec"
                % target_version
            )
        raise AttachError(
            "gdb is not installed (not found on PATH); install it "
            "(apt-get install gdb)%s" % hint,
            EXIT_NO_GDB,
        )
    return "gdb"


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


# --------------------------------------------------------------------------
# The program queued in the target


#: Placeholder for the address and size of the memory gdb maps for the
#: program; gdb overwrites it in place, so it has the same length.
PAGE_MARK = "(0x5f5f5f5f5f5f5f5f, 0x5f5f5f5f)"
#: Prefix of the machine-readable lines our gdb script prints.
GDB_MARK = "PYLEAKHUNT-GDB "


#: Prefix of the module, in the target's ``sys.modules``, that keeps the
#: compiled bootstrap between commands (until --detach removes it); the
#: rest of its name is a hash of the bootstrap's source.
BOOTSTRAP_MODULE = "__pyleakhunt_attach_"


def bootstrap_source() -> Tuple[str, str]:
    """The bootstrap's source, and the module name it gets in the target."""
    import hashlib

    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "_attach_bootstrap.py"), encoding="utf-8") as f:
        source = f.read()
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]
    return source, BOOTSTRAP_MODULE + digest


def bootstrap_program(
    request_path: str,
    source_path: str,
    module: str,
    with_page: bool,
    script_path: Optional[str] = None,
) -> str:
    """The Python source queued in the target.

    It calls `main` of the bootstrap module *module* with *request_path*,
    after building that module from *source_path* if the target does not
    have it yet (both paths as the target sees them; see the end of
    `_attach_bootstrap`).  It is kept to a few lines: the target compiles
    it anew for every command, keeps its syntax tree while it runs, and the
    tracer keeps the code objects of frames it saw.  The outer ``try``
    makes sure that no exception escapes (`_attach_bootstrap` says why),
    and nothing is bound in the target's ``__main__``.

    *script_path* is the file of this program when ``sys.remote_exec`` runs
    it: the program then deletes that file, and its directory if nothing
    else is left there (`Session.close` says why it may outlive the command).
    """
    page = PAGE_MARK if with_page else "None"
    cleanup = ""
    if script_path is not None:
        cleanup = (
            "finally:\n"
            "    try:\n"
            "        __import__('os').unlink(%r)\n"
            "    except BaseException:\n"
            "        pass\n"
            "    try:\n"
            "        __import__('os').rmdir(%r)\n"
            "    except BaseException:\n"
            "        pass\n" % (script_path, os.path.dirname(script_path))
        )
    # The loader runs only when the module is missing, in its own globals:
    # a file left unclosed would warn, and the warning would create
    # __warningregistry__ in the target's __main__.
    loader = (
        "with open(PATH, encoding='utf-8') as f:\n"
        "    exec(compile(f.read(), '<pyleakhunt attach>', 'exec'), "
        "{'__name__': NAME})\n"
    )
    return (
        "try:\n"
        "    __import__('sys').modules.get(%(module)r) or exec(%(loader)r, "
        "{'PATH': %(source)r, 'NAME': %(module)r})\n"
        "    __import__('sys').modules[%(module)r].main(%(request)r, %(page)s)\n"
        "except BaseException:\n"
        "    pass\n"
        % {
            "module": module,
            "loader": loader,
            "source": source_path,
            "request": request_path,
            "page": page,
        }
    ) + cleanup


# --------------------------------------------------------------------------
# gdb (Python 3.10 to 3.13), and sys.remote_exec (3.14 and later)


GDB_SCRIPT = r'''
# Loaded by gdb before it attaches (so that gdb's Python starts while the
# target still runs); run() then runs while the target is stopped.  See
# pyleakhunt/attach.py.
import json

import gdb

P = json.loads(__PARAMS__)
# JSON object keys are strings; the system call tables are keyed by number.
P["blocking"] = {int(k): v for k, v in P["blocking"].items()}
P["fork"] = {int(k): v for k, v in P["fork"].items()}


def report(**fields):
    gdb.write(P["mark"] + json.dumps(fields) + "\n")
    gdb.flush()


def syscall(lwp):
    try:
        with open("/proc/%d/task/%d/syscall" % (P["pid"], lwp)) as f:
            fields = f.read().split()
        return int(fields[0]), [int(a, 16) for a in fields[1:7]]
    except (OSError, ValueError, IndexError):
        return None, []


def address(name):
    if P["addresses"].get(name):
        return P["addresses"][name]
    for library in ("libc", "libpython", "musl"):
        try:
            gdb.execute("sharedlibrary " + library, to_string=True)
        except gdb.error:
            pass
    return int(gdb.parse_and_eval("(long)&" + name))


def call(expression):
    return int(gdb.parse_and_eval(expression))


def creates_thread(name, args):
    """Whether a clone() or clone3() in progress creates a thread."""
    flags = None
    if name == "clone" and args:
        flags = args[0]
    elif name == "clone3" and args:
        try:  # struct clone_args starts with its 64-bit flags
            raw = bytes(gdb.selected_inferior().read_memory(args[0], 8))
            flags = int.from_bytes(raw, "little")
        except gdb.error:
            pass
    return flags is not None and bool(flags & 0x10000)  # CLONE_THREAD


def choose_thread(inferior):
    """A thread waiting in a blocking system call, the main one if it is."""
    blocked, other, main = [], [], None
    for thread in inferior.threads():
        lwp = thread.ptid[1]
        number, args = syscall(lwp)
        if number in P["fork"] and not creates_thread(P["fork"][number], args):
            return None, "thread %d is in %s()" % (lwp, P["fork"][number])
        if lwp == P["pid"]:
            main = thread
        if number in P["blocking"]:
            blocked.append((lwp != P["pid"], thread, P["blocking"][number]))
        elif lwp != P["pid"]:
            other.append(thread)
    if blocked:
        blocked.sort(key=lambda entry: entry[0])
        _, thread, name = blocked[0]
        return thread, "waiting in %s()" % name
    # No thread waits in a system call (a CPU-bound program).  A thread
    # running code can hold a lock that Py_AddPendingCall needs only if it
    # is queueing or running pending calls itself, which only the main
    # thread does; so prefer another thread.  If the call blocks anyway,
    # the client interrupts gdb, which then restores the thread exactly.
    thread = other[0] if other else main
    return thread, "running"


def main():
    inferior = gdb.selected_inferior()
    if inferior.pid != P["pid"]:
        report(ok=False, kind="attach", message="gdb could not attach")
        return
    gdb.execute("set unwindonsignal on")
    gdb.execute("set scheduler-locking off")
    thread, why = choose_thread(inferior)
    if thread is None:
        report(ok=False, kind="refused", message="the process is forking: " + why)
        return
    thread.switch()
    if call("((int(*)(void))%d)()" % address("Py_IsInitialized")) != 1:
        report(ok=False, kind="refused", message="Python is not initialized")
        return
    finalizing = P["addresses"].get("Py_IsFinalizing") or P["addresses"].get(
        "_Py_IsFinalizing"
    )
    if finalizing and call("((int(*)(void))%d)()" % finalizing) != 0:
        report(ok=False, kind="refused", message="the process is shutting down")
        return
    with open(P["payload"], "rb") as f:
        payload = f.read()
    size = (len(payload) + 1 + P["page"] - 1) // P["page"] * P["page"]
    mmap = address("mmap")
    page = call(
        "((void*(*)(void*, unsigned long, int, int, int, long))%d)"
        "((void*)0, %d, 3, 0x22, -1, 0)" % (mmap, size)
    )
    if page in (0, -1) or page > 0xFFFFFFFFFFFFF000:
        report(ok=False, kind="error", message="mmap failed in the target")
        return
    mark = P["page_mark"].encode()
    payload = payload.replace(mark, b"(0x%016x, 0x%08x)" % (page, size), 1)
    inferior.write_memory(page, payload + b"\0")
    queued = call(
        "((int(*)(void*, void*))%d)((void*)%d, (void*)%d)"
        % (address("Py_AddPendingCall"), address("PyRun_SimpleString"), page)
    )
    if queued != 0:
        call("((int(*)(void*, unsigned long))%d)((void*)%d, %d)"
             % (address("munmap"), page, size))
        report(ok=False, kind="error",
               message="Py_AddPendingCall failed (its queue is full)")
        return
    report(ok=True, thread=thread.ptid[1], how=why, page=page, size=size)


def run():
    try:
        main()
    except Exception as exc:  # noqa
        report(ok=False, kind="error", message="%s: %s" % (type(exc).__name__, exc))
'''


def _verify_running(pid: int, proc: ProcFS) -> Optional[str]:
    """Make sure gdb left *pid* running; a warning if it had to be resumed."""
    for _ in range(20):
        try:
            status = proc.status(pid)
        except OSError:
            return None  # gone: nothing to resume
        state = status.get("State", "?")[:1]
        tracer = int(status.get("TracerPid", "0") or 0)
        if state not in "Tt" and not tracer:
            return None
        if state == "T" and not tracer:
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.02)
            if proc.status(pid).get("State", "?")[:1] != "T":
                return "gdb left PID %d stopped; it was resumed (SIGCONT)" % pid
        time.sleep(0.05)  # gdb's detach still under way
    return "PID %d is still stopped or traced after gdb detached" % pid


def _gdb_environment() -> Dict[str, str]:
    """gdb's environment: ours without what could change its behaviour.

    ``LD_PRELOAD`` (a sanitizer runtime, for one) and the ``PYTHON*``
    variables of this interpreter would reach gdb's embedded Python.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "LD_", "DEBUGINFOD", "GDB"))
    }
    env["LC_ALL"] = "C"
    return env


def _stop_gdb(process: subprocess.Popen[bytes]) -> Tuple[bytes, bytes, bool]:
    """Stop a gdb that overran, without ever leaving the target broken.

    SIGINT makes gdb interrupt the inferior call in progress and restore the
    thread's registers (``unwindonsignal``), then our script ends and gdb
    detaches; SIGTERM makes gdb detach and quit.  SIGKILL is never sent: a
    gdb killed in the middle of a call would leave a thread running on a
    stack frame gdb made up.  Returns its output and whether it exited.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            process.send_signal(sig)
        except OSError:
            pass
        try:
            out, err = process.communicate(timeout=GDB_STOP_GRACE)
            return out, err, True
        except subprocess.TimeoutExpired:
            continue
    return b"", b"", False


def gdb_command(gdb: str, pid: int, script_path: str) -> List[str]:
    """The gdb command line that runs our script against *pid*.

    Everything that would make gdb slow or talkative while the target is
    stopped is off: no init files, no auto-loaded scripts (``python-gdb.py``
    would be loaded for libpython), no debuginfod downloads, no symbols of
    shared libraries (our script calls functions by address), and no
    libthread_db (gdb sees the threads through /proc anyway).  The script
    is loaded first, so the target is stopped only while it runs.
    """
    settings = [
        "set auto-load off",
        "set debuginfod enabled off",
        "set auto-solib-add off",
        "set libthread-db-search-path /nonexistent",
        "set pagination off",
        "set confirm off",
        "set print thread-events off",
        "set print inferior-events off",
    ]
    command = [gdb, "-nx", "-nw", "-q", "-batch"]
    for setting in settings + ["source " + script_path]:
        command += ["-iex", setting]
    # Signals that arrive meanwhile go to the program, not to gdb.
    command += ["-p", str(pid), "-ex", "handle all nostop noprint pass"]
    return command + ["-ex", "python run()"]


def run_gdb(
    target: Target,
    program: bytes,
    clock: Clock,
    env: Environment,
    verbose: bool = False,
) -> Dict[str, Any]:
    """Queue *program* in *target* with gdb; return our script's report."""
    gdb = env.which_gdb()
    assert gdb is not None
    machine = target.machine or ELF_X86_64
    tables = _SYSCALLS.get(machine, {"blocking": {}, "fork": {}})
    with tempfile.TemporaryDirectory(prefix="pyleakhunt-gdb-") as scratch:
        payload = os.path.join(scratch, "program.py")
        with open(payload, "wb") as f:
            f.write(program)
        params = {
            "pid": target.pid,
            "mark": GDB_MARK,
            "page_mark": PAGE_MARK,
            "payload": payload,
            "page": os.sysconf("SC_PAGE_SIZE"),
            "addresses": target.addresses,
            "blocking": tables["blocking"],
            "fork": tables["fork"],
        }
        script = GDB_SCRIPT.replace("__PARAMS__", repr(json.dumps(params)))
        script_path = os.path.join(scratch, "pyleakhunt_gdb.py")
        with open(script_path, "w") as f:
            f.write(script)
        command = gdb_command(gdb, target.pid, script_path)
        if verbose:
            _note("running: %s" % " ".join(command))
        # A session of its own: a Ctrl-C meant for us must not reach gdb
        # in the middle of a call (we stop it ourselves, see _stop_gdb).
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=_gdb_environment(),
        )
        exited = True
        try:
            out, err = process.communicate(timeout=min(GDB_BUDGET, clock.remaining()))
        except subprocess.TimeoutExpired:
            out, err, exited = _stop_gdb(process)
            _verify_running(target.pid, env.proc)
            raise AttachError(
                _gdb_timeout_message(target, exited, process.pid), EXIT_TIMEOUT
            ) from None
        except KeyboardInterrupt:
            _stop_gdb(process)
            raise
    text = out.decode("utf-8", "replace")
    errors = err.decode("utf-8", "replace")
    if verbose:
        _note(
            "gdb exited with %s; its output:\n%s%s" % (process.returncode, text, errors)
        )
    for line in text.splitlines():
        if line.startswith(GDB_MARK):
            report = json.loads(line[len(GDB_MARK) :])
            if report.get("kind") == "attach":
                break  # gdb could not attach: its own message says why
            return report
    raise _gdb_failure(target, errors + text)


def _gdb_timeout_message(target: Target, exited: bool, gdb_pid: int) -> str:
    if exited:
        return (
            "timed out: gdb did not finish in time and was interrupted; it "
            "restored PID %d's thread and detached, and the request was "
            "withdrawn" % target.pid
        )
    return (
        "timed out: gdb (PID %d) does not respond and is still attached to "
        "PID %d; do not kill -9 it: wait, or send it SIGINT" % (gdb_pid, target.pid)
    )


def _gdb_failure(target: Target, output: str) -> AttachError:
    """The error for a gdb run that did not report (it could not attach)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if "Python scripting is not supported" in output:
        return AttachError(
            "this gdb has no Python support; install Debian's gdb", EXIT_NO_GDB
        )
    for line in lines:
        if "ptrace:" in line and "not permitted" in line:
            return AttachError(
                "the kernel refused ptrace on PID %d (%s); a container or a "
                "security module may forbid it" % (target.pid, line),
                EXIT_PTRACE,
            )
        if "ptrace:" in line and "No such process" in line:
            return AttachError("no process with PID %d" % target.pid, EXIT_REFUSED)
    last = lines[-1] if lines else "no output"
    return AttachError("gdb failed: %s" % last, EXIT_FAILED)


def run_remote_exec(target: Target, script_path: str, env: Environment) -> None:
    """Queue the script *script_path* in *target* with ``sys.remote_exec``.

    Python 3.14+ writes the path into the main thread's state and asks the
    interpreter to run the file at its next safe point (PEP 768): later, so
    the file must stay until the target has run it (`Session.close`).  A
    second ``sys.remote_exec`` before then replaces the first.
    """
    assert env.remote_exec is not None
    try:
        env.remote_exec(target.pid, script_path)
    except PermissionError as exc:
        raise AttachError(
            "sys.remote_exec was refused: %s" % exc, EXIT_PTRACE
        ) from None
    except ProcessLookupError:
        raise AttachError("no process with PID %d" % target.pid, EXIT_REFUSED) from None
    except RuntimeError as exc:
        if "not enabled" in str(exc):
            # Seen only here: a Python built --without-remote-debug, or
            # options `remote_debug_disabled` did not see.
            raise AttachError(
                "PID %d does not allow remote debugging (sys.remote_exec: %s): "
                "it was started with PYTHON_DISABLE_REMOTE_DEBUG or -X "
                "disable-remote-debug, or its Python was built without it; "
                "--method gdb attaches with a debugger anyway" % (target.pid, exc),
                EXIT_REFUSED,
            ) from None
        raise AttachError(
            "sys.remote_exec failed: %s (try --method gdb)" % exc, EXIT_FAILED
        ) from None
    except (OSError, ValueError) as exc:
        raise AttachError(
            "sys.remote_exec failed: %s (try --method gdb)" % exc, EXIT_FAILED
        ) from None


# --------------------------------------------------------------------------
# The exchange with the bootstrap: a token to claim, a result to read


#: The exchange directories, in the target's ``/tmp``: PID, then random hex.
SESSION_NAME = re.compile(r"^pyleakhunt-attach-(\d+)-[0-9a-f]+$")
#: The script queued by ``sys.remote_exec``; it deletes itself once run.
SCRIPT_NAME = "program.py"


class Session:
    """A private directory the target can reach: the token and the result.

    Made under ``/tmp`` as the target sees it (through ``/proc/PID/root``),
    owned by the target's user when we are root, so that the target can
    rename the token and write its result.
    """

    def __init__(self, target: Target, proc: ProcFS) -> None:
        self.target = target
        name = "pyleakhunt-attach-%d-%s" % (target.pid, secrets.token_hex(6))
        self.inside = "/tmp/" + name  # as the target sees it
        self.outside = proc.target_file(target.pid, self.inside)  # as we do
        #: The name of a script queued by sys.remote_exec, once it is.
        self.queued_script: Optional[str] = None
        os.mkdir(self.outside, 0o700)
        with open(self._out("token"), "w"):
            pass
        if os.geteuid() == 0 and target.uid != 0:
            for path in (self.outside, self._out("token")):
                os.chown(path, target.uid, target.gid)

    def _out(self, name: str) -> str:
        return os.path.join(self.outside, name)

    def same_path_here(self) -> bool:
        """Whether the session's path names the same directory here as there.

        Not so for a target with another ``/tmp`` (a container, systemd's
        PrivateTmp): we reach its files through ``/proc/PID/root`` only.
        """
        try:
            return os.path.samestat(os.stat(self.outside), os.stat(self.inside))
        except OSError:
            return False

    def path(self, name: str) -> str:
        """*name* in the session, as the target sees it."""
        return self.inside + "/" + name

    def write_file(self, name: str, text: str) -> str:
        """A file the target can read; returns its path as the target sees it."""
        with open(self._out(name), "w", encoding="utf-8") as f:
            f.write(text)
        if os.geteuid() == 0 and self.target.uid != 0:
            os.chown(self._out(name), self.target.uid, self.target.gid)
        return self.path(name)

    def result(self, name: str = "result.json") -> Optional[Dict[str, Any]]:
        """The result the target wrote, or None yet."""
        try:
            with open(self._out(name), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def withdraw(self) -> bool:
        """Give up: delete the token.  False if the target claimed it first."""
        try:
            os.unlink(self._out("token"))
            return True
        except FileNotFoundError:
            return False

    def close(self) -> None:
        """Delete the directory (a late bootstrap then finds no token).

        A script queued by ``sys.remote_exec`` that has not claimed the token
        is still to run: the interpreter opens its file later, and would
        print an error on the target's stderr if it were gone.  So that file
        stays, withdrawn; when it runs, it finds no request, does nothing and
        deletes itself and this directory.  Whichever of the two ends last
        removes the directory.
        """
        keep = None
        if self.queued_script is not None:
            self.withdraw()
            if not os.path.exists(self._out("claimed")):
                keep = self.queued_script
        if keep is None:
            shutil.rmtree(self.outside, ignore_errors=True)
            return
        try:
            names = os.listdir(self.outside)
        except OSError:
            names = []
        for name in names:
            if name != keep:
                try:
                    os.unlink(self._out(name))
                except OSError:
                    pass
        try:
            os.rmdir(self.outside)
        except OSError:
            pass  # the script is still there; it removes the directory


def _started_at(pid: int, proc: ProcFS) -> Optional[float]:
    """When process *pid* started (wall clock), or None if it is gone."""
    try:
        ticks = int(proc.stat_fields(pid)[19])
        for line in proc.read("stat").splitlines():
            if line.startswith("btime "):
                return int(line.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return None


def _sessions(target: Target, proc: ProcFS) -> List[Tuple[int, str]]:
    """The exchange directories in *target*'s ``/tmp``: (PID, path from here)."""
    tmp = proc.target_file(target.pid, "/tmp")
    try:
        names = os.listdir(tmp)
    except OSError:
        return []
    found = []
    for name in names:
        match = SESSION_NAME.match(name)
        path = os.path.join(tmp, name)
        if match and os.path.isdir(path) and not os.path.islink(path):
            found.append((int(match.group(1)), path))
    return found


def sweep_orphans(target: Target, proc: ProcFS) -> None:
    """Delete the exchange directories of processes that are gone.

    A withdrawn script stays until its process runs it (`Session.close`);
    if the process ended first, or its PID now names a newer process, it
    never will.  So do a command killed before it could clean up.
    """
    for pid, path in _sessions(target, proc):
        started = _started_at(pid, proc)
        try:
            made = os.lstat(path).st_mtime
        except OSError:
            continue
        if started is None or started > made + 1:
            shutil.rmtree(path, ignore_errors=True)


def withdrawn_scripts(target: Target, proc: ProcFS) -> List[str]:
    """Directories of *target* that hold only a withdrawn, still queued script.

    ``sys.remote_exec`` keeps one script per process: the one it queues
    next replaces any that is still pending.  So once a new script has run,
    the ones found here before it was queued either ran (and deleted
    themselves) or never will; the caller deletes what is left.
    """
    found = []
    for pid, path in _sessions(target, proc):
        try:
            names = os.listdir(path)
        except OSError:
            continue
        if pid == target.pid and names == [SCRIPT_NAME]:
            found.append(path)
    return found


class Progress:
    """One line of progress on stderr for long waits, only on a terminal.

    Nothing is shown in the first `delay` seconds (a short command stays
    quiet) nor when stderr is not a terminal (a log or a pipe gets no
    carriage returns); `close` erases the line.
    """

    def __init__(
        self,
        text: Callable[[], str],
        stream: Optional[Any] = None,
        delay: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.text = text
        self.stream = stream if stream is not None else sys.stderr
        self.delay = delay
        self.monotonic = monotonic
        self.started = monotonic()
        self.shown = 0.0
        try:
            self.enabled = self.stream.isatty()
        except (AttributeError, ValueError):
            self.enabled = False

    def update(self) -> None:
        """Redraw the line, at most 4 times a second, once `delay` is over."""
        now = self.monotonic()
        if not self.enabled or now - self.started < self.delay:
            return
        if self.shown and now - self.shown < 0.25:
            return
        self.shown = now
        self.stream.write("\rpyleakhunt: %s\x1b[K" % self.text())
        self.stream.flush()

    def close(self) -> None:
        """Erase the line, if one was shown."""
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = 0.0


def wait_for_result(
    session: Session,
    clock: Clock,
    env: Environment,
    name: str = "result.json",
    tick: Optional[Callable[[], None]] = None,
) -> Optional[Dict[str, Any]]:
    """The target's result, or None after withdrawing the request in time.

    *tick* is called at each poll (to show progress).
    """
    while True:
        result = session.result(name)
        if result is not None:
            return result
        if tick is not None:
            tick()
        if not clock.waiting():
            break
    if session.withdraw():
        return None
    # The target claimed the token just now: it is working on it.
    grace = env.clock(CLAIMED_GRACE, step=0.02)
    while grace.waiting():
        result = session.result(name)
        if result is not None:
            return result
    return session.result(name) or {
        "ok": False,
        "kind": "late",
        "message": (
            "the target started the command but did not finish in time; it "
            "goes on there (a snapshot or timeline file will still be written)"
        ),
    }


def _main_thread_hint(target: Target, proc: ProcFS, env: Environment) -> str:
    """What the target's main thread is doing, for the timeout message.

    A thread waiting for the GIL wakes up every few milliseconds, so the
    system call it waits in is sampled a few times.
    """
    for _ in range(20):
        call = proc.syscall(target.pid, target.pid)
        if call is not None:
            break
        env.sleep(0.005)
    else:
        return "its main thread runs without reaching Python code"
    name = syscall_name(target.machine or ELF_X86_64, call[0])
    if name == "futex()":
        return (
            "its main thread waits in futex(): for the GIL, held by another "
            "thread in a long C call, or on a lock (thread.join() and the like)"
        )
    return "its main thread waits in %s without running Python code" % name


# --------------------------------------------------------------------------
# The command


@dataclass
class Request:
    """One ``pyleakhunt attach`` command, as parsed."""

    pid: int
    command: str = "start"
    nframe: int = 10
    sample_bytes: Optional[int] = None
    path: Optional[str] = None
    full: bool = False
    interval: float = 1.0
    duration: float = 60.0
    wait: bool = False
    timeout: float = DEFAULT_TIMEOUT
    method: str = "auto"
    verbose: bool = False


def _fallback_path(target: Target) -> Optional[str]:
    """The directory holding this pyleakhunt package, for the target to use.

    Only if this installation has an extension module built for the
    target's Python version (the bootstrap checks the exact file name
    again, against the target's own list of suffixes).
    """
    package = os.path.dirname(os.path.abspath(__file__))
    if target.version is None:
        return None
    tag = "cpython-%d%d%s" % (target.version + (target.abiflags,))
    try:
        names = os.listdir(package)
    except OSError:
        return None
    if any(name.startswith("_core.%s-" % tag) for name in names):
        return os.path.dirname(package)
    return None


def _queue_with_gdb(
    target: Target, program: str, clock: Clock, env: Environment, verbose: bool
) -> None:
    """Queue *program* in *target* with gdb (`run_gdb`); AttachError if not."""
    report = run_gdb(target, program.encode("utf-8"), clock, env, verbose)
    warning = _verify_running(target.pid, env.proc)
    if warning:
        _warn(warning)
    if not report.get("ok"):
        code = EXIT_REFUSED if report.get("kind") == "refused" else EXIT_FAILED
        raise AttachError("PID %d: %s" % (target.pid, report.get("message")), code)
    if verbose:
        _note("queued by thread %s (%s)" % (report.get("thread"), report.get("how")))


def _queue_with_remote_exec(
    session: Session,
    request_path: str,
    source_path: str,
    module: str,
    env: Environment,
) -> None:
    """Write the program as a script file and queue it with sys.remote_exec."""
    script = session.path(SCRIPT_NAME)
    program = bootstrap_program(request_path, source_path, module, False, script)
    session.write_file(SCRIPT_NAME, program)
    run_remote_exec(session.target, script, env)
    session.queued_script = SCRIPT_NAME  # from now on, it may run any time


def _wait_for_watch(session: Session, request: Request, env: Environment) -> bool:
    """Wait until the target's watch is over (--wait); True if it succeeded."""
    budget = env.clock(request.duration + request.timeout)
    started = env.monotonic()

    def text() -> str:
        elapsed = min(env.monotonic() - started, request.duration)
        return "PID %d is recording a timeline in %s: %.0f s of %g s" % (
            session.target.pid,
            request.path,
            elapsed,
            request.duration,
        )

    progress = Progress(text, monotonic=env.monotonic)
    try:
        done = wait_for_result(session, budget, env, "done.json", progress.update)
    finally:
        progress.close()
    return bool(done and done.get("ok"))


def _method_for_another_tmp(target: Target, request: Request, env: Environment) -> str:
    """gdb, for a target whose ``/tmp`` is not ours, or AttachError."""
    if request.method == "auto" and env.which_gdb() is not None:
        return "gdb"
    other = "use --method gdb"
    if request.method == "auto":
        other = "install gdb (apt-get install gdb)"
    raise AttachError(
        "PID %d has another /tmp than pyleakhunt (a container, or systemd's "
        "PrivateTmp), and sys.remote_exec needs the script's path to be the "
        "same for both; run pyleakhunt in its mount namespace (nsenter -m -t "
        "%d), or %s" % (target.pid, target.pid, other),
        EXIT_REFUSED if request.method == "remote_exec" else EXIT_NO_GDB,
    )


def attach(request: Request, env: Optional[Environment] = None) -> Dict[str, Any]:
    """Run one attach command; return the target's result (``ok`` is True).

    Raises AttachError for every failure, with its exit code.
    """
    env = env or Environment()
    proc = env.proc
    if request.pid == env.own_pid:
        raise AttachError("pyleakhunt cannot attach to itself", EXIT_REFUSED)
    clock = env.clock(request.timeout)
    target = inspect_target(request.pid, proc)
    check_version(target)
    check_state(target.pid, proc, env.clock(SETTLE_SECONDS))
    check_not_forking(target, proc, env.clock(SETTLE_SECONDS))
    check_ptrace_permitted(target, proc, env.own_pid)
    assert target.version is not None
    try:
        method = choose_method(
            target.version,
            env.python,
            env.remote_exec is not None,
            env.which_gdb(),
            request.method,
            remote_debug_disabled(target.pid, proc),
        )
    except AttachError as exc:
        if exc.code != EXIT_REFUSED:
            raise
        raise AttachError("PID %d: %s" % (target.pid, exc), exc.code) from None
    if request.path is not None:
        check_output(target, request.path, proc)

    sweep_orphans(target, proc)
    try:
        session = Session(target, proc)
    except OSError as exc:
        raise AttachError(
            "cannot make a directory for the exchange in PID %d's /tmp: %s"
            % (target.pid, exc.strerror or exc),
            EXIT_FILE,
        ) from None
    try:
        if method == "remote_exec" and not session.same_path_here():
            # sys.remote_exec checks the script's path here, and the target
            # opens the same path there.
            method = _method_for_another_tmp(target, request, env)
        wire = {
            "pid": target.pid,
            "command": request.command,
            "token": session.path("token"),
            "claimed": session.path("claimed"),
            "result": session.path("result.json"),
            "deadline": env.wall_clock() + clock.remaining(),
            "fallback_path": _fallback_path(target),
            "nframe": request.nframe,
            "sample_bytes": request.sample_bytes,
            "path": request.path,
            "full": request.full,
            "interval": request.interval,
            "duration": request.duration,
            "done": session.path("done.json") if request.wait else None,
        }
        displaced: List[str] = []
        source, module = bootstrap_source()
        source_path = session.write_file("bootstrap_source.py", source)
        request_path = session.write_file("request.json", json.dumps(wire))
        if method == "gdb":
            program = bootstrap_program(request_path, source_path, module, True)
            _queue_with_gdb(target, program, clock, env, request.verbose)
        else:
            displaced = withdrawn_scripts(target, proc)
            _queue_with_remote_exec(session, request_path, source_path, module, env)
        result = wait_for_result(session, clock, env)
        if result is not None:
            # Ours ran, so the withdrawn scripts seen before it was queued
            # either ran before it or were replaced by it.
            for path in displaced:
                shutil.rmtree(path, ignore_errors=True)
        if result is None:
            raise AttachError(
                "timed out after %.1f s: PID %d did not run the request (%s); "
                "it was withdrawn: if the target runs it later, it will do "
                "nothing"
                % (request.timeout, target.pid, _main_thread_hint(target, proc, env)),
                EXIT_TIMEOUT,
            )
        if not result.get("ok"):
            kind = result.get("kind")
            code = {"refused": EXIT_REFUSED, "late": EXIT_TIMEOUT}.get(
                kind, EXIT_TARGET_ERROR
            )
            raise AttachError("PID %d: %s" % (target.pid, result.get("message")), code)
        result["method"] = method
        if request.command == "watch" and request.wait:
            result["watch_finished"] = _wait_for_watch(session, request, env)
        return result
    finally:
        session.close()


# --------------------------------------------------------------------------
# Output


def describe(request: Request, result: Dict[str, Any]) -> List[str]:
    """The lines printed for a successful *result*."""
    pid = result.get("pid", request.pid)
    where = "PID %d (Python %s)" % (pid, result.get("python", "?"))
    lines = []
    if request.command == "start":
        if result.get("was_tracing"):
            lines.append(
                "%s was already tracing; traceback limit now %d frames"
                % (where, result.get("nframe", request.nframe))
            )
        else:
            sampling = ""
            if result.get("sample_bytes"):
                sampling = ", sampling every %s" % format_size(result["sample_bytes"])
            lines.append(
                "%s is tracing, %d frames per traceback%s"
                % (where, result.get("nframe", request.nframe), sampling)
            )
        lines.append(
            "next: pyleakhunt attach %d --snapshot FILE; stop with "
            "pyleakhunt attach %d --detach" % (pid, pid)
        )
    elif request.command == "snapshot":
        kind = "an aggregated" if result.get("aggregated") else "a full"
        lines.append(
            "%s wrote %s snapshot to %s: %s in %d blocks at %d call sites "
            "(file %s, %.2f s)"
            % (
                where,
                kind,
                result.get("path"),
                format_size(result.get("snapshot_bytes", 0)),
                result.get("snapshot_blocks", 0),
                result.get("sites", 0),
                format_size(result.get("file_bytes", 0)),
                result.get("seconds", 0.0),
            )
        )
        lines.append("see: pyleakhunt top %s" % result.get("path"))
    elif request.command == "watch":
        state = "recorded" if result.get("watch_finished") else "is recording"
        lines.append(
            "%s %s a timeline in %s: a sample every %g s for %g s"
            % (where, state, result.get("path"), request.interval, request.duration)
        )
        lines.append("then: pyleakhunt suspects %s" % result.get("path"))
    elif request.command == "detach":
        if result.get("was_tracing"):
            lines.append("%s stopped tracing; its allocators are restored" % where)
        else:
            lines.append("%s was not tracing; nothing to stop" % where)
    else:
        if result.get("tracing"):
            lines.append(
                "%s is tracing, %d frames per traceback: %s traced now, %s at "
                "most; the tracer uses %s"
                % (
                    where,
                    result.get("nframe", 0),
                    format_size(result.get("traced_bytes", 0)),
                    format_size(result.get("traced_peak", 0)),
                    format_size(result.get("tracer_memory", 0)),
                )
            )
        else:
            lines.append("%s is not tracing" % where)
        if result.get("watches"):
            lines.append("%d timeline watch(es) running" % result["watches"])
    origin = result.get("pyleakhunt_source")
    if request.verbose and origin:
        lines.append(
            "pyleakhunt %s from %s (%s), via %s"
            % (
                result.get("pyleakhunt_version"),
                result.get("pyleakhunt_file"),
                "the target's own" if origin == "target" else "this installation",
                result.get("method"),
            )
        )
    return lines


# --------------------------------------------------------------------------
# Command line


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a number: %r" % text) from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be > 0: %r" % text)
    return value


def _nframe(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not an integer: %r" % text) from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 1 and 65535: %r" % text)
    return value


def _size(text: str) -> int:
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1 byte: %r" % text)
    return value


def _pid(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("not a process id: %r" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("not a process id: %r" % text)
    return value


SUMMARY = "trace a running Python process: start, snapshot, watch, detach"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``pyleakhunt attach``."""
    parser.add_argument("pid", type=_pid, metavar="PID", help="the process")
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--snapshot",
        metavar="FILE",
        help="write a snapshot of the target to FILE (written by the target)",
    )
    action.add_argument(
        "--watch",
        type=_positive_float,
        metavar="S",
        help="record a timeline, a sample every S seconds (see --duration, -o)",
    )
    action.add_argument(
        "--detach",
        action="store_true",
        help="stop tracing in the target and restore its allocators",
    )
    action.add_argument(
        "--status", action="store_true", help="show whether the target traces"
    )
    parser.add_argument(
        "--nframe",
        type=_nframe,
        default=10,
        metavar="N",
        help="frames kept per traceback when tracing starts (default: 10)",
    )
    parser.add_argument(
        "--sample",
        type=_size,
        metavar="BYTES",
        help="sampled tracing: on average one allocation per BYTES (e.g. 512KiB)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="--snapshot: keep every block, not only per-site totals",
    )
    parser.add_argument(
        "--duration",
        type=_positive_float,
        default=60.0,
        metavar="T",
        help="--watch: stop after T seconds (default: 60)",
    )
    parser.add_argument(
        "-o",
        dest="output",
        metavar="FILE",
        help="--watch: the timeline file (default: pyleakhunt-PID-TIME.plh here)",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="--watch: wait until the timeline is complete",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help="give up after S seconds (default: %g)" % DEFAULT_TIMEOUT,
    )
    parser.add_argument(
        "--method",
        choices=("auto", "gdb", "remote_exec"),
        default="auto",
        help="how to get in: gdb (Python 3.10+), sys.remote_exec (3.14+), or "
        "auto (the default: remote_exec when it can, else gdb)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show what gdb does"
    )


def request_from_args(args: argparse.Namespace) -> Request:
    """The `Request` of parsed *args*; AttachError (exit 2) on misuse."""

    def misuse(message: str) -> AttachError:
        return AttachError(message + " (see 'pyleakhunt attach --help')", EXIT_USAGE)

    request = Request(
        pid=args.pid,
        nframe=args.nframe,
        sample_bytes=args.sample,
        timeout=args.timeout,
        method=args.method,
        verbose=args.verbose,
        full=args.full,
        wait=args.wait,
        duration=args.duration,
    )
    if args.snapshot is not None:
        request.command = "snapshot"
        request.path = os.path.abspath(args.snapshot)
    elif args.watch is not None:
        request.command = "watch"
        request.interval = args.watch
        output = args.output or "pyleakhunt-%d-%s.plh" % (
            args.pid,
            time.strftime("%Y%m%d-%H%M%S"),
        )
        request.path = os.path.abspath(output)
    elif args.detach:
        request.command = "detach"
    elif args.status:
        request.command = "status"
    if args.full and request.command != "snapshot":
        raise misuse("--full goes with --snapshot")
    if args.output and request.command != "watch":
        raise misuse("-o goes with --watch")
    if args.wait and request.command != "watch":
        raise misuse("--wait goes with --watch")
    return request


def run_command(args: argparse.Namespace, env: Optional[Environment] = None) -> int:
    """Run parsed ``pyleakhunt attach`` arguments; return the exit code."""
    try:
        request = request_from_args(args)
        result = attach(request, env)
    except AttachError as exc:
        _error(str(exc))
        return exc.code
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    sys.stdout.write("".join(line + "\n" for line in describe(request, result)))
    sys.stdout.flush()
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add the ``attach`` command to the ``pyleakhunt`` command's *subparsers*.

    Its handler, ``args.func(args)``, returns the exit code and prints its
    errors as one line (``pyleakhunt: error: ...``).
    """
    parser = subparsers.add_parser(
        "attach",
        help=SUMMARY,
        description=SUMMARY[0].upper() + SUMMARY[1:] + ".",
        epilog=exit_codes_text(EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run_command)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line and exit code 2."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        _error("%s (see '%s --help')" % (message, self.prog))
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m pyleakhunt.attach``."""
    parser = _Parser(
        prog="pyleakhunt attach",
        description=SUMMARY[0].upper() + SUMMARY[1:] + ".",
        epilog=exit_codes_text(EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def main(
    argv: Optional[Sequence[str]] = None, env: Optional[Environment] = None
) -> int:
    """``python -m pyleakhunt.attach ARGS``; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    return run_command(args, env)


if __name__ == "__main__":
    sys.exit(main())
