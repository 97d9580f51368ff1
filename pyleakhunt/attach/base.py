"""What every part of ``pyleakhunt attach`` shares: exit codes, the error,
the limits and the clock, the machine it reads (`Environment`) and the
request (`Request`)."""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import (
    Callable,
    Optional,
    Tuple,
)

from .. import errors as _errors
from ..process.proc import ProcFS

# --------------------------------------------------------------------------
# Exit codes and errors

# The one table of the pyleakhunt command (pyleakhunt.errors, docs/cli.md):
# attach gives 1 and 3 to 8.
EXIT_CODES = _errors.EXIT_CODES
EXIT_OK = _errors.EXIT_OK
EXIT_FAILED = _errors.EXIT_FAILED
EXIT_USAGE = _errors.EXIT_USAGE
EXIT_FILE = _errors.EXIT_FILE
EXIT_REFUSED = _errors.EXIT_REFUSED
EXIT_PTRACE = _errors.EXIT_PTRACE
EXIT_NO_GDB = _errors.EXIT_NO_GDB
EXIT_TIMEOUT = _errors.EXIT_TIMEOUT
EXIT_TARGET_ERROR = _errors.EXIT_TARGET_ERROR
EXIT_INTERRUPTED = _errors.EXIT_INTERRUPTED

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
#: The oldest target Python (3.14 and later use sys.remote_exec: see
#: `methods.REMOTE_EXEC_VERSION`).
MIN_VERSION = (3, 10)


class AttachError(_errors.PyleakhuntError):
    """A failure reported as one line, with its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, code)


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


# How to get in


@dataclass
class Environment:
    """What the command reads from the machine; tests replace parts of it."""

    proc: ProcFS = field(default_factory=ProcFS)
    #: The PATH where gdb is looked for (None: this process's PATH).
    path: Optional[str] = None
    #: The gdb to use, a path or a name on *path* (``PYLEAKHUNT_GDB``; by
    #: default ``gdb``): a newer gdb than the system's, for one.
    gdb: str = field(default_factory=lambda: os.environ.get("PYLEAKHUNT_GDB") or "gdb")
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
        """The gdb executable, or None if there is none.

        Raises AttachError (exit 6) when ``PYLEAKHUNT_GDB`` names something
        that cannot be run: the user asked for that gdb, so another one
        would be a surprise.
        """
        found = shutil.which(self.gdb, path=self.path)
        if found is None and self.gdb != "gdb":
            raise AttachError(
                "PYLEAKHUNT_GDB=%s is not an executable file" % self.gdb,
                EXIT_NO_GDB,
            )
        return found


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
