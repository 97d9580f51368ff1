"""How ``pyleakhunt attach`` gets in: gdb (Python 3.10 to 3.13), and
``sys.remote_exec`` (3.14 and later)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import (
    Any,
    Dict,
    List,
    Optional,
    Tuple,
)

from ..process.elf import EM_X86_64
from ..process.proc import ProcFS
from .base import (
    EXIT_FAILED,
    EXIT_NO_GDB,
    EXIT_PTRACE,
    EXIT_REFUSED,
    EXIT_TIMEOUT,
    GDB_BUDGET,
    GDB_STOP_GRACE,
    AttachError,
    Clock,
    Environment,
)
from .checks import SYSCALLS, Target
from .output import note
from .session import PAGE_MARK

#: The first target Python that ``sys.remote_exec`` can attach to.
REMOTE_EXEC_VERSION = (3, 14)
#: The program gdb runs, a file beside this module (read, never imported
#: here: it imports gdb's own module).
GDB_SCRIPT_FILE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "gdb_script.py"
)
#: The line of that program that one run's parameters replace.
PARAMS_LINE = 'PARAMS = "{}"'


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


#: Prefix of the machine-readable lines our gdb script prints.
GDB_MARK = "PYLEAKHUNT-GDB "


def verify_running(pid: int, proc: ProcFS) -> Optional[str]:
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


#: What gdb prints when it cannot write a thread's registers back.  After
#: a function call in the target, gdb restores the thread's registers; if
#: that fails, the thread resumes with registers gdb made up (a system call
#: returns ERESTARTNOHAND to Python, for one) and the target fails.  gdb 13
#: does this on CPUs with AMX, whose XSAVE area is larger than it knows.
REGISTER_WRITE_FAILURE = "Couldn't write"
#: Seconds the probe of gdb (`gdb_call_problem`) may take.
GDB_PROBE_SECONDS = 5.0
#: The probes made by this process, by gdb path.
_gdb_probes: Dict[str, Optional[str]] = {}


def gdb_call_problem(gdb: str, timeout: float = GDB_PROBE_SECONDS) -> Optional[str]:
    """Why *gdb* would break a process it calls a function in, or None.

    Tried once per gdb and process, on a throwaway Python of ours, never on
    a target: attaching the way the gdb path does (a call, then a restore
    of the registers) is the only test that is sure to match what would
    happen to the target.  None also when the probe cannot tell (no
    answer in time, ptrace refused): the attach's own checks then speak.
    """
    if gdb not in _gdb_probes:
        _gdb_probes[gdb] = _probe_gdb(gdb, timeout)
    return _gdb_probes[gdb]


def _probe_gdb(gdb: str, timeout: float) -> Optional[str]:
    env = _gdb_environment()
    child = subprocess.Popen(
        [sys.executable, "-S", "-c", "import time; print(flush=True); time.sleep(60)"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        # Attached before its C library is loaded, gdb would not find
        # getpid(): wait for the child's first line.
        assert child.stdout is not None
        if not select.select([child.stdout], [], [], timeout)[0]:
            return None
        command = [gdb, "-nx", "-nw", "-q", "-batch", "-iex", "set auto-load off"]
        command += ["-iex", "set debuginfod enabled off"]
        # Only the C library's symbols: loading libpython's takes seconds.
        command += ["-iex", "set auto-solib-add off", "-p", str(child.pid)]
        command += ["-ex", "sharedlibrary libc", "-ex", "call (int)getpid()"]
        try:
            probe = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                env=env,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        output = (probe.stdout + probe.stderr).decode("utf-8", "replace")
    finally:
        child.kill()
        child.wait()
    for line in output.splitlines():
        if REGISTER_WRITE_FAILURE in line:
            return (
                "%s cannot restore a thread's registers on this machine (%s), "
                "so attaching would break the target; gdb 13 and older do this "
                "on CPUs with AMX: name a newer gdb in PYLEAKHUNT_GDB%s"
                % (gdb, line.strip(), _remote_exec_hint())
            )
    return None


def _remote_exec_hint() -> str:
    if sys.version_info >= REMOTE_EXEC_VERSION:
        return ", or let a Python 3.14+ target use sys.remote_exec"
    return ", or attach to Python 3.14+ targets with sys.remote_exec"


def check_gdb_can_call(gdb: str) -> None:
    """Raise AttachError (exit 6) if *gdb* would break the target."""
    problem = gdb_call_problem(gdb)
    if problem is not None:
        raise AttachError(problem, EXIT_NO_GDB)


def gdb_script(params: Dict[str, Any]) -> str:
    """The source of `GDB_SCRIPT_FILE` for one run, with its *params*."""
    with open(GDB_SCRIPT_FILE, encoding="utf-8") as f:
        source = f.read()
    assert PARAMS_LINE in source, "%s lost its parameters line" % GDB_SCRIPT_FILE
    return source.replace(PARAMS_LINE, "PARAMS = %r" % json.dumps(params), 1)


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
    machine = target.machine or EM_X86_64
    tables = SYSCALLS.get(machine, {"blocking": {}, "fork": {}})
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
        script = gdb_script(params)
        script_path = os.path.join(scratch, "pyleakhunt_gdb.py")
        with open(script_path, "w") as f:
            f.write(script)
        command = gdb_command(gdb, target.pid, script_path)
        if verbose:
            note("running: %s" % " ".join(command))
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
            verify_running(target.pid, env.proc)
            raise AttachError(
                _gdb_timeout_message(target, exited, process.pid), EXIT_TIMEOUT
            ) from None
        except KeyboardInterrupt:
            _stop_gdb(process)
            raise
    text = out.decode("utf-8", "replace")
    errors = err.decode("utf-8", "replace")
    if verbose:
        note(
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
