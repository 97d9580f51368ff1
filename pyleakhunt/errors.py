"""The exit codes of the ``pyleakhunt`` command, and the error that carries one.

One table for every subcommand: a number means the same thing whichever
command gives it (docs/cli.md).  The table and `PyleakhuntError` live here,
at the bottom of the package, rather than in `pyleakhunt.commands`, because
the census and attach raise them from library code that the commands sit
on: the census's and attach's errors subclass `PyleakhuntError` without
importing upwards.  `pyleakhunt.commands` prints them and re-exports them.
The one-line printers (`error`, `warn`) are here for the same reason.
"""

from __future__ import annotations

import sys
from typing import Dict, Optional

EXIT_OK = 0
#: The command could not do its work, for a reason without a code of its own.
EXIT_FAILED = 1
EXIT_USAGE = 2
#: An input or output file (or run's script, module, command) is the problem.
EXIT_FILE = 3
#: The process is gone, not a supported Python, or in no state to be read.
EXIT_REFUSED = 4
#: The process is not ours to trace or read.
EXIT_PTRACE = 5
EXIT_NO_GDB = 6
EXIT_TIMEOUT = 7
EXIT_TARGET_ERROR = 8
#: What was asked for is not there (census --type, --held-by).
EXIT_NOT_FOUND = 9
EXIT_INTERRUPTED = 130

#: Every exit code of the ``pyleakhunt`` command and what it means, for
#: ``--help`` of every subcommand.
EXIT_CODES: Dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FAILED: (
        "failed, for a reason the error line gives (demo: no leak found; "
        "attach: gdb's or sys.remote_exec's error); run exits with its "
        "program's own code, 1 when the program raised an exception"
    ),
    EXIT_USAGE: "bad usage: unknown command, bad option or argument",
    EXIT_FILE: (
        "a file is missing, unreadable, truncated or of the wrong kind (not a "
        "pyleakhunt file, an ELF core of a supported CPython or a saved "
        "census), an output file cannot be written (attach: by the target's "
        "user), or the script, module or command given to run is not found"
    ),
    EXIT_REFUSED: (
        "the process is gone, not Python or not CPython 3.10-3.15, or in no "
        "state to be read or attached to: stopped, traced, forking, shutting "
        "down, closed to remote debugging, unable to import pyleakhunt"
    ),
    EXIT_PTRACE: (
        "not permitted to read or trace the process (kernel.yama.ptrace_scope, "
        "another user)"
    ),
    EXIT_NO_GDB: "gdb is missing (or has no Python support)",
    EXIT_TIMEOUT: (
        "timed out: the target's main thread did not run Python code in time "
        "(for example, another thread holds the GIL in a long C call)"
    ),
    EXIT_TARGET_ERROR: "the target ran the command and reported an error",
    EXIT_NOT_FOUND: "census: --type or --held-by names nothing in the census",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}


class PyleakhuntError(Exception):
    """An error the command reports as one line on stderr, exiting with
    ``code`` (one of `EXIT_CODES`).

    A subclass sets its usual code as the class attribute ``code``; the
    constructor may give another.
    """

    code: int = EXIT_FAILED

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def exit_code(self) -> int:
        """The same as ``code`` (the census's errors had this name)."""
        return self.code


class UsageError(PyleakhuntError):
    """Bad command-line usage (exit code 2)."""

    code = EXIT_USAGE


class FileError(PyleakhuntError):
    """A file cannot be read, is not of the kind needed, or cannot be
    written; or run's script, module or command is not found (exit code 3)."""

    code = EXIT_FILE


def error(message: str) -> None:
    """Print *message* as the command's one-line error on stderr."""
    sys.stderr.write("pyleakhunt: error: %s\n" % message)
    sys.stderr.flush()


def warn(message: str) -> None:
    """Print *message* as a one-line warning on stderr; the command goes on."""
    sys.stderr.write("pyleakhunt: warning: %s\n" % message)
    sys.stderr.flush()
