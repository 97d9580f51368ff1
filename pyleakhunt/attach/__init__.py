"""``pyleakhunt attach``: trace a running Python process without restarting it.

Usage::

    pyleakhunt attach PID [--nframe N] [--sample BYTES]   start tracing
    pyleakhunt attach PID --snapshot FILE [--full]        write a snapshot
    pyleakhunt attach PID --watch S [--duration T] [-o FILE] [--wait]
                                                          record a timeline
    pyleakhunt attach PID --status                        what the target does
    pyleakhunt attach PID --detach                        stop attach's tracing

(also ``python -m pyleakhunt.attach ...``).  Every file is written by the
target itself, so FILE must be writable by the target's user; it is a path
as the target sees it.

How the code gets in (docs/attach.md has the full story):

1. Checks, before touching the target, all from ``/proc``: the process
   exists, is Python (a ``libpython`` mapping, or Python's symbols in its
   executable), which version; it is not stopped, not traced, not forking;
   ptrace is permitted; the output file is writable by the target's user.
2. The request goes into a small Python program (`bootstrap`).  On
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

The package, one room per concern::

    base.py        exit codes, AttachError, limits, Clock, Environment, Request
    checks.py      the safety checks (step 1), all from /proc
    methods.py     choosing the method; gdb and sys.remote_exec (step 2)
    gdb_script.py  the program gdb runs (read and written out, not imported)
    session.py     the program queued, the exchange directory (step 3)
    bootstrap.py   the code that runs in the target (its source is sent)
    command.py     one command from start to end (`attach`)
    output.py      what is printed: notes, progress, the result's lines

The command line is ``pyleakhunt.commands.attach``; its names (`main`,
`register`...) are also reachable here, imported on first use.

Reading ``/proc`` and ELF files, and telling which CPython a process runs,
is ``pyleakhunt.process``, shared with the census.
"""

from typing import Any

from ..process.elf import EM_AARCH64 as ELF_AARCH64
from ..process.elf import EM_X86_64 as ELF_X86_64
from ..process.proc import MappedFile, ProcFS
from .base import (
    CLAIMED_GRACE,
    DEFAULT_TIMEOUT,
    EXIT_CODES,
    EXIT_FAILED,
    EXIT_FILE,
    EXIT_INTERRUPTED,
    EXIT_NO_GDB,
    EXIT_OK,
    EXIT_PTRACE,
    EXIT_REFUSED,
    EXIT_TARGET_ERROR,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    GDB_BUDGET,
    GDB_STOP_GRACE,
    MIN_VERSION,
    SETTLE_SECONDS,
    AttachError,
    Clock,
    Environment,
    Request,
)
from .checks import (
    CAP_SYS_PTRACE,
    CLONE_THREAD,
    CLONE_VFORK,
    LIBC_SYMBOLS,
    PF_FORKNOEXEC,
    PYTHON_SYMBOLS,
    SYSCALLS,
    Target,
    check_not_forking,
    check_output,
    check_ptrace_permitted,
    check_state,
    check_version,
    inspect_target,
    remote_debug_disabled,
    syscall_name,
    writable_by,
)
from .command import attach
from .methods import (
    GDB_MARK,
    REMOTE_EXEC_VERSION,
    choose_method,
    gdb_command,
    run_gdb,
    run_remote_exec,
)
from .output import Progress, describe
from .session import (
    BOOTSTRAP_MODULE,
    PAGE_MARK,
    SCRIPT_NAME,
    SESSION_NAME,
    Session,
    bootstrap_program,
    bootstrap_source,
    sweep_orphans,
    wait_for_result,
    withdrawn_scripts,
)

__all__ = [
    "AttachError",
    "BOOTSTRAP_MODULE",
    "CAP_SYS_PTRACE",
    "CLAIMED_GRACE",
    "CLONE_THREAD",
    "CLONE_VFORK",
    "Clock",
    "DEFAULT_TIMEOUT",
    "ELF_AARCH64",
    "ELF_X86_64",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_FILE",
    "EXIT_INTERRUPTED",
    "EXIT_NO_GDB",
    "EXIT_OK",
    "EXIT_PTRACE",
    "EXIT_REFUSED",
    "EXIT_TARGET_ERROR",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "Environment",
    "GDB_BUDGET",
    "GDB_MARK",
    "GDB_STOP_GRACE",
    "LIBC_SYMBOLS",
    "MIN_VERSION",
    "MappedFile",
    "PAGE_MARK",
    "PF_FORKNOEXEC",
    "PYTHON_SYMBOLS",
    "ProcFS",
    "Progress",
    "REMOTE_EXEC_VERSION",
    "Request",
    "SCRIPT_NAME",
    "SESSION_NAME",
    "SETTLE_SECONDS",
    "SUMMARY",
    "SYSCALLS",
    "Session",
    "Target",
    "add_arguments",
    "attach",
    "bootstrap_program",
    "bootstrap_source",
    "build_parser",
    "check_not_forking",
    "check_output",
    "check_ptrace_permitted",
    "check_state",
    "check_version",
    "choose_method",
    "describe",
    "gdb_command",
    "inspect_target",
    "main",
    "register",
    "remote_debug_disabled",
    "request_from_args",
    "run_command",
    "run_gdb",
    "run_remote_exec",
    "sweep_orphans",
    "syscall_name",
    "wait_for_result",
    "withdrawn_scripts",
    "writable_by",
]

#: The command line's names, kept reachable from here for code that used
#: them so (``pyleakhunt.attach.main``...): imported on first use, so that
#: the package itself never loads the command line.
_COMMAND_LINE = (
    "SUMMARY",
    "add_arguments",
    "build_parser",
    "main",
    "register",
    "request_from_args",
    "run_command",
)


def __getattr__(name: str) -> Any:
    if name not in _COMMAND_LINE:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    from ..commands import attach as command_line

    value = getattr(command_line, name)
    globals()[name] = value
    return value
