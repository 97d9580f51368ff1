"""Always-on tracing for production: start at launch, follow forks, dump on
a signal.

Set the environment variable ``PYLEAKHUNT`` and every Python process that
sees it (and has pyleakhunt installed) traces from its first line::

    PYLEAKHUNT="sample=512KiB,nframe=32,dir=/var/tmp/leaks" gunicorn app:app

The ``pyleakhunt-autostart.pth`` file that pip installs in site-packages
reads the variable at interpreter start, before ``sitecustomize`` and the
program, and calls `start_from_environment` only when it is set: without the
variable, the cost is one dictionary lookup.  ``pyleakhunt run -- COMMAND``
sets the variable for a command and everything it starts.

The value is ``1`` (or ``on``) for the defaults, ``0`` (or ``off``) for
nothing, or comma-separated options:

``sample=SIZE``
    mean gap between recorded allocations (``512KiB``, the default), or
    ``exact`` (or 0) to trace every allocation;
``nframe=N``
    frames kept per traceback (32);
``dir=PATH``
    where timelines and dumps go (the current directory at startup);
``interval=S``
    seconds between the samples of the process's timeline (60); 0 for no
    timeline and no watcher thread;
``signal=NAME``
    the signal that writes a snapshot file (``SIGUSR2``): ``SIGUSR1``,
    ``SIGUSR2``, ``SIGRTMIN+N``, or ``none``.

Anything wrong in the value (an unknown option, a bad size, a directory
that cannot be written) prints one line on stderr,
``pyleakhunt: ignoring PYLEAKHUNT: ...``, and the process runs untraced,
exactly as without the variable: a typo never changes how a fleet runs.

Each process writes its own timeline, ``DIR/pyleakhunt-<pid>-<time>.plh``,
which ``pyleakhunt suspects DIR`` reads.  A forked child (a gunicorn or
multiprocessing worker) keeps tracing with the tables it inherited (its
heap is a copy of the parent's) and starts its own timeline, named with its
own pid; the parent's file is left untouched.  The dump signal writes an
aggregated snapshot to ``DIR/pyleakhunt-dump-<pid>-<time>.plh`` without
stopping the process (see `install_dump_signal`).
"""

from __future__ import annotations

import atexit
import errno
import os
import signal
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, BinaryIO, Dict, Mapping, Optional, Tuple, Union

import pyleakhunt

from . import _core, lease
from ._files import write_atomically
from .fileformat import TimelineWriter
from .lease import Lease
from .snapshot import Snapshot
from .units import parse_size
from .watcher import LeakWatcher

__all__ = [
    "DEFAULT_INTERVAL",
    "DEFAULT_NFRAME",
    "DEFAULT_SAMPLE_BYTES",
    "ENV_VAR",
    "PTH_FILENAME",
    "Settings",
    "dump_path",
    "dump_signals",
    "dump_snapshot",
    "install_dump_signal",
    "is_started",
    "parse_settings",
    "start",
    "start_from_environment",
    "stop",
    "timeline_path",
    "uninstall_dump_signal",
]

#: The environment variable read at interpreter start.
ENV_VAR = "PYLEAKHUNT"
#: The file installed in site-packages that reads it.
PTH_FILENAME = "pyleakhunt-autostart.pth"

DEFAULT_SAMPLE_BYTES = 512 * 1024
DEFAULT_NFRAME = 32
DEFAULT_INTERVAL = 60.0
DEFAULT_SIGNAL = signal.SIGUSR2

_ON = ("1", "on", "yes", "true")
_OFF = ("0", "off", "no", "false")
_OPTIONS = ("sample", "nframe", "dir", "interval", "signal")


# --------------------------------------------------------------------------
# Signals that may carry a dump


def _realtime_range() -> Tuple[int, int]:
    """SIGRTMIN and SIGRTMAX (the constants exist only from Python 3.11)."""
    low = getattr(signal, "SIGRTMIN", None)
    high = getattr(signal, "SIGRTMAX", None)
    if low is None or high is None:
        # valid_signals() leaves out the real-time signals the C library
        # keeps for itself, so its first one above 31 is SIGRTMIN.
        realtime = [int(s) for s in signal.valid_signals() if int(s) > 31]
        if not realtime:
            return (0, -1)
        return (min(realtime), max(realtime))
    return (int(low), int(high))


def dump_signals() -> Dict[int, str]:
    """Signals that ``PYLEAKHUNT``'s ``signal=`` accepts, by number.

    Only those whose default action nobody relies on: SIGUSR1, SIGUSR2 and
    the real-time signals.  SIGTERM, SIGINT, SIGQUIT and the like keep
    their meaning.
    """
    names = {int(signal.SIGUSR1): "SIGUSR1", int(signal.SIGUSR2): "SIGUSR2"}
    low, high = _realtime_range()
    for number in range(low, high + 1):
        names[number] = "SIGRTMIN+%d" % (number - low) if number > low else "SIGRTMIN"
    return names


def _parse_signal(text: str) -> Optional[int]:
    word = text.strip().upper()
    if word in ("NONE", "OFF", "NO", "0"):
        return None
    allowed = dump_signals()
    number: Optional[int] = None
    if word.isdigit():
        number = int(word)
    else:
        if not word.startswith("SIG"):
            word = "SIG" + word
        low, _high = _realtime_range()
        if word == "SIGRTMIN":
            number = low
        elif word.startswith("SIGRTMIN+") and word[9:].isdigit():
            number = low + int(word[9:])
        elif word in ("SIGUSR1", "SIGUSR2"):
            number = int(getattr(signal, word))
    if number is None or number not in allowed:
        raise ValueError(
            "signal=%s: not a dump signal (use SIGUSR1, SIGUSR2, SIGRTMIN+N "
            "or none)" % text.strip()
        )
    return number


# --------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Settings:
    """How a process traces when always on (the options of ``PYLEAKHUNT``)."""

    #: Mean gap in bytes between recorded allocations; 0 traces every one.
    sample_bytes: int = DEFAULT_SAMPLE_BYTES
    #: Frames kept per traceback.
    nframe: int = DEFAULT_NFRAME
    #: Directory of the timelines and dumps (made absolute by `start`).
    directory: str = "."
    #: Seconds between timeline samples; 0 for no watcher and no timeline.
    interval: float = DEFAULT_INTERVAL
    #: Signal that writes a snapshot file; None for no handler.
    dump_signal: Optional[int] = DEFAULT_SIGNAL

    def __post_init__(self) -> None:
        if not isinstance(self.sample_bytes, int) or self.sample_bytes < 0:
            raise ValueError("sample=%r: not a size" % (self.sample_bytes,))
        if not isinstance(self.nframe, int) or not 1 <= self.nframe <= 65535:
            raise ValueError("nframe=%r: must be between 1 and 65535" % (self.nframe,))
        if not self.directory or "," in self.directory:
            raise ValueError("dir=%r: must be a path without commas" % self.directory)
        if not 0 <= self.interval < float("inf"):
            raise ValueError(
                "interval=%r: must be a number of seconds >= 0" % (self.interval,)
            )

    def to_environment(self) -> str:
        """These settings as a ``PYLEAKHUNT`` value (`parse_settings` reads it)."""
        dump = "none"
        if self.dump_signal is not None:
            dump = dump_signals().get(self.dump_signal, str(self.dump_signal))
        return "sample=%s,nframe=%d,dir=%s,interval=%s,signal=%s" % (
            self.sample_bytes or "exact",
            self.nframe,
            self.directory,
            repr(float(self.interval)),
            dump,
        )


def parse_settings(text: str) -> Optional[Settings]:
    """The `Settings` that a ``PYLEAKHUNT`` value asks for, or None when it
    turns tracing off (``""``, ``0``, ``off``).

    Raises ValueError, with a message naming the option, on anything else
    that is not understood.
    """
    text = text.strip()
    if not text or text.lower() in _OFF:
        return None
    if text.lower() in _ON:
        return Settings()
    fields: Dict[str, Any] = {}
    seen = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        value = value.strip()
        if not sep or key not in _OPTIONS:
            raise ValueError(
                "%r is not an option (expected NAME=VALUE with NAME one of %s)"
                % (item, ", ".join(_OPTIONS))
            )
        if key in seen:
            raise ValueError("%s is given twice" % key)
        seen.add(key)
        if key == "sample":
            if value.lower() in ("exact", "0"):
                fields["sample_bytes"] = 0
            else:
                try:
                    fields["sample_bytes"] = parse_size(value)
                except ValueError:
                    raise ValueError(
                        "sample=%s: not a size (for example 512KiB, or exact)" % value
                    ) from None
                if fields["sample_bytes"] < 1:
                    raise ValueError("sample=%s: must be at least 1 byte" % value)
        elif key == "nframe":
            if not value.isdigit():
                raise ValueError("nframe=%s: not a whole number" % value)
            fields["nframe"] = int(value)
        elif key == "dir":
            fields["directory"] = os.path.expanduser(value)
        elif key == "interval":
            try:
                fields["interval"] = float(value)
            except ValueError:
                raise ValueError(
                    "interval=%s: not a number of seconds" % value
                ) from None
        else:
            fields["dump_signal"] = _parse_signal(value)
    return Settings(**fields)


# --------------------------------------------------------------------------
# File names and atomic writes


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def timeline_path(directory: str, pid: Optional[int] = None) -> str:
    """``DIR/pyleakhunt-<pid>-<YYYYmmdd-HHMMSS>.plh``: a process's timeline."""
    pid = os.getpid() if pid is None else pid
    return os.path.join(directory, "pyleakhunt-%d-%s.plh" % (pid, _stamp()))


def dump_path(directory: str, pid: Optional[int] = None) -> str:
    """``DIR/pyleakhunt-dump-<pid>-<YYYYmmdd-HHMMSS>.plh``, with ``-2``,
    ``-3``... appended if several dumps fall in the same second."""
    pid = os.getpid() if pid is None else pid
    base = os.path.join(directory, "pyleakhunt-dump-%d-%s" % (pid, _stamp()))
    path, n = base + ".plh", 1
    while os.path.lexists(path):
        n += 1
        path = "%s-%d.plh" % (base, n)
    return path


def _create_exclusive(path: str) -> Tuple[str, BinaryIO]:
    """Create *path* (or *path* with ``-2``, ``-3``... before the suffix if
    it exists: a pid reused by an exec'd program in the same second)."""
    root, ext = os.path.splitext(path)
    candidate, n = path, 1
    while True:
        try:
            return candidate, open(candidate, "xb")
        except FileExistsError:
            n += 1
            candidate = "%s-%d%s" % (root, n, ext)


def dump_snapshot(directory: str = ".", full: bool = False) -> str:
    """Write a snapshot of this process to *directory*; return its path.

    The file (`dump_path`) appears complete or not at all: it is written
    under a hidden temporary name in the same directory, then renamed.  The
    snapshot is aggregated unless *full* (per-block traces: bigger and
    slower).  Raises RuntimeError when not tracing, OSError when the file
    cannot be written.
    """
    snapshot = pyleakhunt.take_snapshot(traces=full)
    return _write_atomically(snapshot, directory)


def _write_atomically(snapshot: Snapshot, directory: str) -> str:
    path = dump_path(directory)
    write_atomically(path, snapshot.dump)
    return path


def _say(message: str) -> None:
    """One line on stderr, written straight to the file descriptor.

    This runs in signal handlers and fork hooks: ``sys.stderr`` may be in
    the middle of a write there (its lock held, so writing again would
    raise "reentrant call"), or replaced by the program.
    """
    try:
        os.write(2, (message + "\n").encode("utf-8", "backslashreplace"))
    except OSError:
        pass


# --------------------------------------------------------------------------
# The dump signal


class _DumpHandler:
    """The signal handler that writes a snapshot, then calls the previous
    Python handler if there was one."""

    def __init__(self, directory: str, full: bool, previous: Any) -> None:
        self.directory = directory
        self.full = full
        self.previous = previous
        self._busy = False

    def __call__(self, signum: int, frame: Any) -> None:
        # A second signal during a dump runs this handler again, nested in
        # the first (Python runs handlers between bytecodes): skip it.
        if not self._busy:
            self._busy = True
            try:
                if not pyleakhunt.is_tracing():
                    _say("pyleakhunt: dump signal: not tracing, no snapshot written")
                else:
                    path = dump_snapshot(self.directory, self.full)
                    _say("pyleakhunt: dump signal: wrote %s" % path)
            except Exception as exc:
                _say(
                    "pyleakhunt: dump signal: no snapshot written: %s: %s"
                    % (type(exc).__name__, exc)
                )
            finally:
                self._busy = False
        if callable(self.previous):
            self.previous(signum, frame)


#: signal number -> the handler installed on it.
_dump_handlers: Dict[int, _DumpHandler] = {}


def install_dump_signal(
    signum: int = DEFAULT_SIGNAL,
    directory: Union[str, os.PathLike[str]] = ".",
    full: bool = False,
) -> None:
    """Write a snapshot file each time the process receives *signum*.

    The file goes to *directory* (`dump_path`: the pid and the time are in
    its name), written atomically, while the program goes on; one line on
    stderr says where.  The snapshot is aggregated unless *full*.  A Python
    handler already installed for *signum* is called after the dump.

    Python runs signal handlers in the main thread, between bytecodes: a
    main thread busy in a long C call dumps when the call returns.  Must be
    called from the main thread (as `signal.signal`).
    """
    directory = os.path.abspath(os.fspath(directory))
    previous = signal.getsignal(signum)
    if isinstance(previous, _DumpHandler):
        previous = previous.previous
    handler = _DumpHandler(directory, full, previous)
    signal.signal(signum, handler)
    _dump_handlers[signum] = handler


def uninstall_dump_signal(signum: int = DEFAULT_SIGNAL) -> None:
    """Put back the handler that *signum* had before `install_dump_signal`."""
    handler = _dump_handlers.pop(signum, None)
    if handler is None:
        return
    previous = handler.previous
    if previous is None:  # installed from C: the best we can do
        previous = signal.SIG_DFL
    if signal.getsignal(signum) is handler:
        signal.signal(signum, previous)


# --------------------------------------------------------------------------
# The timeline watcher


def _fresh_objects(settings: Settings) -> bool:
    """Whether the trace keeps CPython's free lists empty (`pyleakhunt.start`'s
    *fresh_objects*).  Exact tracing does, as `start()` does by default: a
    staging run or `pyleakhunt run -- COMMAND` names the line that keeps a
    small dict, not the line that threw away the dict whose memory it
    reuses (its free list) or, from 3.13, whose key table it reuses.
    Sampled tracing leaves them alone: it pays for no more allocations than
    the program makes."""
    return not settings.sample_bytes


class _TimelineWatcher(LeakWatcher):
    """A LeakWatcher that appends every sample to this process's timeline,
    and that a fork waits for (`fork_lock`) so that a child never inherits
    half an entry in its copy of the file's buffer."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(
            interval=settings.interval,
            nframe=settings.nframe,
            fresh_objects=_fresh_objects(settings),
        )
        self.fork_lock = threading.Lock()
        self.path, self._file = _create_exclusive(timeline_path(settings.directory))
        self._timeline: Optional[TimelineWriter] = TimelineWriter(self._file)

    def sample(self) -> Snapshot:
        # Tracing stopped by the program: end the thread (LeakWatcher stops
        # on an exception) rather than restart it with other settings.
        if not pyleakhunt.is_tracing():
            raise RuntimeError("tracing was stopped")
        with self.fork_lock:
            snapshot = super().sample()
            if self._timeline is not None:
                self._timeline.append(snapshot.raw)
        return snapshot

    def stop(self, final_sample: bool = True, closing: bool = True) -> None:
        try:
            super().stop(final_sample, closing)
        finally:
            self._close()

    def _close(self) -> None:
        self._timeline = None
        self._file.close()

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's timeline without writing to
        it.  Its buffer is empty (appends flush under `fork_lock`, which the
        fork held), so closing the child's copy writes nothing."""
        self.fork_lock.release()
        self._close()
        if self._lease is not None:  # production's own lease keeps tracing
            self._lease.release()
            self._lease = None


# --------------------------------------------------------------------------
# Starting and stopping


class _Session:
    """What `start` set up in this process."""

    def __init__(self, settings: Settings, tracer: Lease) -> None:
        self.settings = settings
        #: Production's own lease on the tracer (its watcher holds another).
        self.tracer = tracer
        self.watcher: Optional[_TimelineWatcher] = None


_session: Optional[_Session] = None
#: The watcher whose fork_lock the pending fork holds.
_fork_held: Optional[_TimelineWatcher] = None
_hooks_registered = False
#: What the first start_from_environment() of the process returned.
_environment_result: Optional[bool] = None


def is_started() -> bool:
    """True while always-on tracing (`start`, or ``PYLEAKHUNT``) is on."""
    return _session is not None


def _register_hooks() -> None:
    global _hooks_registered
    if _hooks_registered:
        return
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
    # Registered after pyleakhunt's own atexit hook, so it runs before it
    # (atexit is last in, first out): the last sample is taken while the
    # tracer is still on.
    atexit.register(_at_exit)
    _hooks_registered = True


def start(settings: Optional[Settings] = None) -> None:
    """Turn always-on tracing on in this process, as ``PYLEAKHUNT`` does.

    Starts sampled (or exact) tracing, the timeline watcher (unless the
    interval is 0) and the dump signal handler (unless None), and follows
    forks.  Raises RuntimeError if already started, ValueError if tracing
    is already on with another sampling rate, OSError if the directory
    cannot be written; nothing is left half started.
    """
    global _session
    if _session is not None:
        raise RuntimeError("pyleakhunt.production is already started; stop() first")
    settings = settings or Settings()
    directory = os.path.abspath(settings.directory)
    settings = replace(settings, directory=directory)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise OSError(exc.errno, "dir=%s: %s" % (directory, exc.strerror)) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "dir=%s: not writable" % directory)
    tracer = lease.acquire(
        settings.nframe,
        sample_bytes=settings.sample_bytes or None,
        owner="production",
        fresh_objects=_fresh_objects(settings),
        empty_free_lists=True,
    )
    session = _Session(settings, tracer)
    _session = session
    try:
        if settings.interval > 0:
            session.watcher = _TimelineWatcher(settings)
            session.watcher.start()
        if settings.dump_signal is not None:
            install_dump_signal(settings.dump_signal, directory)
        _register_hooks()
    except BaseException:
        stop()
        raise


def stop() -> None:
    """Undo `start`: the watcher takes a last sample and closes its
    timeline, the dump handler goes, and tracing stops if `start` began it."""
    global _session
    session, _session = _session, None
    if session is None:
        return
    try:
        if session.watcher is not None:
            session.watcher.stop()
    finally:
        signum = session.settings.dump_signal
        if signum is not None and signum in _dump_handlers:
            try:
                uninstall_dump_signal(signum)
            except ValueError:  # not the main thread
                pass
        session.tracer.release()


def start_from_environment(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Start always-on tracing as ``PYLEAKHUNT`` (in *environ*, by default
    ``os.environ``) says; return whether tracing started.

    This is what ``pyleakhunt-autostart.pth`` calls at interpreter start.
    It never raises: a value it cannot honour prints one warning on stderr
    and leaves the process untraced.  Python runs the hook in every
    interpreter: a subinterpreter does nothing (the main interpreter's
    session traces the process).
    """
    global _environment_result
    if not _core.in_main_interpreter():
        return False
    if environ is None:
        # Python runs the .pth files of a virtual environment twice (site.py
        # adds its site-packages once in venv(), then again with the
        # others): only the first call counts, so there is one warning.
        if _environment_result is not None:
            return _environment_result
        _environment_result = False
        environ = os.environ
    text = environ.get(ENV_VAR, "")
    try:
        settings = parse_settings(text)
        if settings is None:
            return False
        start(settings)
        _environment_result = True
        return True
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and exc.strerror and exc.filename is None:
            reason = exc.strerror  # our own message, without "[Errno 13]"
        _say("pyleakhunt: ignoring %s: %s; running untraced" % (ENV_VAR, reason))
        return False


# --------------------------------------------------------------------------
# Fork and exit


def _before_fork() -> None:
    global _fork_held
    session = _session
    if session is not None and session.watcher is not None:
        session.watcher.fork_lock.acquire()
        _fork_held = session.watcher


def _after_fork_in_parent() -> None:
    global _fork_held
    held, _fork_held = _fork_held, None
    if held is not None:
        held.fork_lock.release()


def _after_fork_in_child() -> None:
    """A forked child: its own timeline, named with its pid, and a new
    watcher thread (the parent's did not survive the fork)."""
    global _fork_held
    held, _fork_held = _fork_held, None
    session = _session
    if held is not None:
        held.forget_after_fork()
    if session is None or session.watcher is None:
        return
    session.watcher = None
    try:
        session.watcher = _TimelineWatcher(session.settings)
        session.watcher.start()
    except Exception as exc:
        _say(
            "pyleakhunt: pid %d: no timeline for this forked process: %s"
            % (os.getpid(), exc)
        )


def _at_exit() -> None:
    session = _session
    if session is not None and session.watcher is not None:
        try:
            session.watcher.stop()
        except Exception:
            pass
        session.watcher = None
