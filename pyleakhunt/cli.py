"""The ``pyleakhunt`` command (also ``python -m pyleakhunt``).

Usage::

    pyleakhunt run [--nframe N] [--interval S] [-o DIR] [--json] script.py [args ...]
    pyleakhunt run [--nframe N] [--interval S] [-o DIR] [--json] -m module [args ...]
    pyleakhunt top FILE [-n N] [--key KEY] [--cumulative] [--json]
    pyleakhunt diff OLD NEW [-n N] [--key KEY] [--cumulative] [--json]
    pyleakhunt suspects DIR_OR_FILE [-n N] [--key KEY] [--json]
    pyleakhunt demo [--requests N]

``run`` runs a Python program in this process with tracing on from its first
line, samples it every S seconds into a timeline file
``DIR/pyleakhunt-<pid>-<YYYYmmdd-HHMMSS>.plh``, and when the program ends
prints a summary (the timeline, the top suspects) on stderr.  ``top`` shows
the biggest call sites of a snapshot file or of the last entry of a timeline,
``diff`` the growth between two such files, ``suspects`` the call sites that
kept growing in a timeline, or in every timeline of a directory.  KEY is
``lineno`` (the default), ``filename`` or ``traceback``.

JSON output (``--json``, on stdout).  Sizes are in bytes, timestamps in
seconds since the epoch, tracebacks lists of ``[filename, lineno]`` with the
most recent call first, ``filename``/``lineno`` the most recent frame
(``lineno`` is 0 with ``--key filename``)::

    top:      {"command": "top", "file", "kind": "snapshot"|"timeline",
               "entries": N|null, "truncated_tail", "aggregated", "pid",
               "timestamp", "traceback_limit", "estimated", "sample_bytes",
               "lost_blocks", "total_size", "total_count", "key_type",
               "cumulative", "statistics": [{"filename", "lineno", "size",
               "count", "traceback"}, ...]}
    diff:     {"command": "diff", "old": {FILE}, "new": {FILE}, "estimated",
               "lost_blocks", "key_type", "cumulative", "statistics":
               [{"filename", "lineno", "size", "size_diff", "count",
               "count_diff", "traceback"}, ...]}
              ({FILE}: the keys of top from "file" to "total_count"; the
              biggest growth first, unchanged call sites left out)
    suspects: [{"file", "pid", "filename", "lineno", "size", "count",
               "growth_bytes", "growth_bytes_per_s",
               "growth_bytes_per_snapshot", "consistency", "samples",
               "duration_s", "estimated", "traceback"}, ...]
    run:      {"command": "run", "timeline", "pid", "exit_code", "samples",
               "duration_s", "sampling_error": str|null,
               "suspects": [SUSPECT, ...]}
              (one line after the program's output; SUSPECT as in suspects)

{FILE} holds the ``top`` keys from "file" to "total_count".  ``diff`` lists
the biggest growth first and leaves out call sites that did not change; its
"estimated" is true if either file is, its "lost_blocks" the larger count.
``suspects`` lists each timeline's suspects (at most N each), the fastest
growth first, timelines in name order.  "estimated" true means sampled
tracing: sizes and counts are estimates.  "lost_blocks" > 0 means the tracer
failed to record some blocks: the figures are incomplete.

Exit codes::

    0    success
    1    run: the program raised an exception (otherwise run exits with the
         program's own exit code); demo: no leak found
    2    bad usage: unknown command, bad option or argument
    3    a file is missing, unreadable or not a valid pyleakhunt file, or the
         script or module given to run cannot be found
    130  interrupted (Ctrl-C)

Errors are one line on stderr (``pyleakhunt: error: ...``).  Output cut
short by a closed pipe (``pyleakhunt top f | head``) is not an error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import runpy
import sys
import textwrap
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import pyleakhunt

from . import report
from .fileformat import (
    KIND_TIMELINE,
    MAGIC,
    FileFormatError,
    iter_timeline,
)
from .growth import DEFAULT_RULE, GrowthRule, Sample, find_suspects, reduce_snapshot
from .report import LoadedSnapshot, TimelineSuspects
from .snapshot import Snapshot, Traceback
from .watcher import LeakWatcher

# --------------------------------------------------------------------------
# Exit codes

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_BAD_FILE = 3
EXIT_INTERRUPTED = 130

#: Every exit code of the command and what it means (shown by ``--help``).
EXIT_CODES: Dict[int, str] = {
    EXIT_OK: "success",
    EXIT_FAILURE: (
        "run: the program raised an exception (otherwise run exits with the "
        "program's own exit code); demo: no leak found"
    ),
    EXIT_USAGE: "bad usage: unknown command, bad option or argument",
    EXIT_BAD_FILE: (
        "a file is missing, unreadable or not a valid pyleakhunt file, or the "
        "script or module given to run cannot be found"
    ),
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

#: Files at least this big show progress on stderr while loading (on a TTY).
PROGRESS_MIN_BYTES = 50 * 1024 * 1024
#: Size of the file header that starts every pyleakhunt file
#: (docs/file-format.md).
_HEADER_BYTES = 16
#: Suffixes of the timeline files ``suspects`` looks for in a directory.
TIMELINE_SUFFIXES = (".plh", ".plht")
KEY_CHOICES = ("lineno", "filename", "traceback")

JSON_TOP = """\
top:      {"command": "top", "file", "kind": "snapshot"|"timeline",
           "entries": N|null, "truncated_tail", "aggregated", "pid",
           "timestamp", "traceback_limit", "estimated", "sample_bytes",
           "lost_blocks", "total_size", "total_count", "key_type",
           "cumulative", "statistics": [{"filename", "lineno", "size",
           "count", "traceback"}, ...]}"""
JSON_DIFF = """\
diff:     {"command": "diff", "old": {FILE}, "new": {FILE}, "estimated",
           "lost_blocks", "key_type", "cumulative", "statistics":
           [{"filename", "lineno", "size", "size_diff", "count",
           "count_diff", "traceback"}, ...]}
          ({FILE}: the keys of top from "file" to "total_count"; the
          biggest growth first, unchanged call sites left out)"""
JSON_SUSPECTS = """\
suspects: [{"file", "pid", "filename", "lineno", "size", "count",
           "growth_bytes", "growth_bytes_per_s",
           "growth_bytes_per_snapshot", "consistency", "samples",
           "duration_s", "estimated", "traceback"}, ...]"""
JSON_RUN = """\
run:      {"command": "run", "timeline", "pid", "exit_code", "samples",
           "duration_s", "sampling_error": str|null,
           "suspects": [SUSPECT, ...]}
          (one line after the program's output; SUSPECT as in suspects)"""
JSON_NOTES = """\
Sizes in bytes, timestamps in seconds since the epoch; tracebacks are lists
of [filename, lineno], the most recent call first; filename/lineno are the
most recent frame (lineno 0 with --key filename).  "estimated": sampled
tracing, figures are estimates; "lost_blocks" > 0: figures are incomplete."""


def _exit_codes_text() -> str:
    lines = ["exit codes:"]
    for code, meaning in EXIT_CODES.items():
        lines.append(
            textwrap.fill(
                meaning,
                width=76,
                initial_indent="  %-4d " % code,
                subsequent_indent=" " * 7,
            )
        )
    return "\n".join(lines)


def _epilog(*json_shapes: str) -> str:
    parts = []
    if json_shapes:
        parts.append("JSON output (--json, on stdout):")
        parts += ["  " + line for shape in json_shapes for line in shape.splitlines()]
        parts += ["  " + line for line in JSON_NOTES.splitlines()]
        parts.append("")
    parts.append(_exit_codes_text())
    return "\n".join(parts)


# --------------------------------------------------------------------------
# Errors and output


class CLIError(Exception):
    """An error reported as one line on stderr, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_BAD_FILE) -> None:
        super().__init__(message)
        self.code = code


class UsageError(CLIError):
    """Bad command-line usage (exit code 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, not usage plus error."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError("%s (see '%s --help')" % (message, self.prog))


def _error(message: str) -> None:
    sys.stderr.write("pyleakhunt: error: %s\n" % message)
    sys.stderr.flush()


def _warn(message: str) -> None:
    sys.stderr.write("pyleakhunt: warning: %s\n" % message)
    sys.stderr.flush()


def _print_lines(lines: Sequence[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))


def _print_json(doc: Any, compact: bool = False) -> None:
    if compact:
        sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
    else:
        sys.stdout.write(report.dumps(doc) + "\n")


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def _reading(path: str, action: str = "read") -> Iterator[None]:
    """Turn the errors of reading (or *action*) *path* into one-line CLIErrors."""
    try:
        yield
    except FileFormatError as exc:
        raise CLIError("%s: %s" % (path, exc)) from None
    except BrokenPipeError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise CLIError("cannot %s %s: %s" % (action, path, reason)) from None


# --------------------------------------------------------------------------
# Reading files


class _Progress:
    """Progress of a long load on stderr, shown only on a TTY for big files."""

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.size = size
        self.enabled = size >= PROGRESS_MIN_BYTES and _stderr_is_tty()
        self.shown = False
        self._last = 0.0
        self._width = 0  # of the line shown, to blank out what is left of it

    def loading(self) -> None:
        """Say once that a big file is being loaded."""
        if self.enabled:
            sys.stderr.write(
                "pyleakhunt: loading %s (%.0f MiB)...\n"
                % (self.path, self.size / (1024 * 1024))
            )
            sys.stderr.flush()

    def entries(self, count: int, offset: int) -> None:
        """Show how many timeline entries are read (at most 5 times a second)."""
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.2:
            return
        self._last = now
        percent = 100 * offset / self.size if self.size else 100
        self._show(
            "pyleakhunt: reading %s: %s (%.0f%%)"
            % (self.path, report.plural(count, "entry", "entries"), percent)
        )

    def done(self, count: int) -> None:
        """End the progress line, if one was shown."""
        if self.shown:
            self._show(
                "pyleakhunt: reading %s: %s, done"
                % (self.path, report.plural(count, "entry", "entries")),
                end="\n",
            )

    def _show(self, text: str, end: str = "") -> None:
        self.shown = True
        sys.stderr.write("\r" + text.ljust(self._width) + end)
        sys.stderr.flush()
        self._width = len(text)


def file_kind(path: str) -> str:
    """``"timeline"`` for a timeline file, ``"snapshot"`` for anything else.

    Only the file header is read; reading the file as a snapshot then
    reports precisely what is wrong with anything that is not one.
    """
    with open(path, "rb") as f:
        head = f.read(_HEADER_BYTES)
    if len(head) == _HEADER_BYTES and head.startswith(MAGIC):
        if head[10] == KIND_TIMELINE:
            return "timeline"
    return "snapshot"


class TimelineReader:
    """The entries of a timeline file, streamed one at a time.

    A last entry cut short (the process was killed while writing it) is
    skipped with a warning on stderr, and `truncated_tail` is set.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.entries = 0
        self.truncated_tail = False

    def __iter__(self) -> Iterator[Any]:
        with open(self.path, "rb") as f:
            progress = _Progress(self.path, os.fstat(f.fileno()).st_size)
            end = _HEADER_BYTES  # just after the last complete entry
            try:
                for raw in iter_timeline(f, allow_truncated_tail=True):
                    end = f.tell()
                    self.entries += 1
                    progress.entries(self.entries, end)
                    yield raw
            finally:
                progress.done(self.entries)
            # The reader stops silently at an incomplete entry, after
            # reading into it: anything read past the last complete entry
            # was a truncated tail.
            self.truncated_tail = f.tell() > end
        if self.truncated_tail:
            _warn(
                "%s: the last entry is truncated (the process was probably "
                "killed while writing it); read the %d complete entries"
                % (self.path, self.entries)
            )


def load_snapshot(path: str) -> LoadedSnapshot:
    """A snapshot file, or the last entry of a timeline file."""
    with _reading(path):
        if file_kind(path) == "timeline":
            reader = TimelineReader(path)
            last = None
            for raw in reader:
                last = raw
            if last is None:
                raise CLIError("%s: the timeline has no complete entry" % path)
            return LoadedSnapshot(
                path,
                Snapshot._from_raw(last),
                kind="timeline",
                entries=reader.entries,
                truncated_tail=reader.truncated_tail,
            )
        _Progress(path, os.path.getsize(path)).loading()
        return LoadedSnapshot(path, Snapshot.load(path))


def analyse_timeline(
    path: str, key_type: str = "lineno", rule: GrowthRule = DEFAULT_RULE
) -> TimelineSuspects:
    """The suspects of one timeline file.

    The same rule as `pyleakhunt.growth.suspects_in`, but streamed: each
    entry is reduced to its per-key figures as it is read, so a long
    timeline never has to fit in memory.
    """
    with _reading(path):
        if file_kind(path) != "timeline":
            raise CLIError(
                "%s: this is a snapshot file, not a timeline; 'suspects' needs "
                "a timeline written by 'pyleakhunt run' or LeakWatcher(path=...) "
                "(see 'pyleakhunt top' for a snapshot)" % path
            )
        reader = TimelineReader(path)
        samples: List[Sample] = []
        tracebacks: Dict[Traceback, Traceback] = {}
        canonical: Dict[Traceback, Traceback] = {}  # one key object per key
        pid = lost_blocks = 0
        for raw in reader:
            sample, biggest = reduce_snapshot(Snapshot._from_raw(raw), key_type)
            sample.figures = {
                canonical.setdefault(key, key): figures
                for key, figures in sample.figures.items()
            }
            for key, traceback in biggest.items():
                tracebacks[canonical[key]] = traceback
            samples.append(sample)
            pid = raw.pid or pid
            lost_blocks = max(lost_blocks, raw.lost_blocks)
    samples.sort(key=lambda s: s.timestamp)
    return TimelineSuspects(
        path=path,
        pid=pid,
        samples=len(samples),
        first_timestamp=samples[0].timestamp if samples else 0.0,
        last_timestamp=samples[-1].timestamp if samples else 0.0,
        suspects=find_suspects(samples, tracebacks, rule),
        estimated=any(s.estimated for s in samples),
        lost_blocks=lost_blocks,
        truncated_tail=reader.truncated_tail,
    )


def timeline_paths(path: str) -> List[str]:
    """*path* itself, or the timeline files of directory *path* by name."""
    if not os.path.isdir(path):
        if not os.path.exists(path):
            raise CLIError("cannot read %s: No such file or directory" % path)
        return [path]
    with _reading(path):
        names = sorted(os.listdir(path))
    found = []
    for name in names:
        full = os.path.join(path, name)
        if not name.endswith(TIMELINE_SUFFIXES) or not os.path.isfile(full):
            continue
        try:
            with _reading(full):
                kind = file_kind(full)
        except CLIError as exc:
            _warn("skipping %s" % exc)
            continue
        if kind == "timeline":
            found.append(full)
    if not found:
        raise CLIError("%s: no timeline files (*.plh) in this directory" % path)
    return found


# --------------------------------------------------------------------------
# Argument types


def _positive_int(text: str, what: str, high: Optional[int] = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%s must be an integer" % what) from None
    if value < 1 or (high is not None and value > high):
        limit = "between 1 and %d" % high if high is not None else ">= 1"
        raise argparse.ArgumentTypeError("%s must be %s, not %d" % (what, limit, value))
    return value


def _nframe(text: str) -> int:
    return _positive_int(text, "the number of frames", 65535)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("N must be an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError("N must be >= 0, not %d" % value)
    return value


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("the interval must be a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(
            "the interval must be a positive number of seconds, not %s" % text
        )
    return value


def _add_report_options(parser: argparse.ArgumentParser, cumulative: bool) -> None:
    parser.add_argument(
        "-n",
        dest="limit",
        type=_limit,
        default=10,
        metavar="N",
        help="show the N biggest (default: 10)",
    )
    parser.add_argument(
        "--key",
        choices=KEY_CHOICES,
        default="lineno",
        help="group by line (default), by file, or by whole traceback",
    )
    if cumulative:
        parser.add_argument(
            "--cumulative",
            action="store_true",
            help="count every frame of a traceback, not only the most recent",
        )
    parser.add_argument(
        "--json", action="store_true", help="machine-readable output on stdout"
    )


def _check_cumulative(args: argparse.Namespace) -> None:
    if args.cumulative and args.key == "traceback":
        raise UsageError("--cumulative needs --key lineno or --key filename")


# --------------------------------------------------------------------------
# run


@dataclass
class Target:
    """What ``run`` executes: a script or a module, with its arguments.

    *kind* is ``"script"`` or ``"module"``; a console command (``-- COMMAND``)
    would be a third kind with its own `check`, `prepare` and `execute`.
    """

    kind: str
    name: str
    args: List[str]

    def check(self) -> None:
        """Raise CLIError if the script or module cannot be found."""
        if self.kind == "script":
            try:
                if os.path.isfile(self.name):
                    open(self.name, "rb").close()
                elif not os.path.isdir(self.name):
                    raise FileNotFoundError(2, "No such file or directory")
            except OSError as exc:
                raise CLIError(
                    "can't open file %r: %s" % (self.name, exc.strerror or exc)
                ) from None
            return
        # For a dotted name this imports the parent packages (untraced),
        # as python -m does before running the module.
        try:
            found = importlib.util.find_spec(self.name) is not None
            problem = ""
        except (ImportError, ValueError) as exc:
            found, problem = False, ": %s" % exc
        if not found:
            raise CLIError("No module named %r%s" % (self.name, problem))

    def prepare(self) -> None:
        """Set sys.argv and sys.path[0] as Python does for this target."""
        if self.kind == "script":
            sys.argv = [self.name, *self.args]
            if os.path.isfile(self.name):
                first = os.path.dirname(os.path.realpath(self.name))
            else:  # a directory or zip file with a __main__.py
                first = os.path.abspath(self.name)
        else:
            sys.argv = ["-m", *self.args]  # runpy sets argv[0] to the file
            first = os.getcwd()
        if getattr(sys.flags, "safe_path", False):
            return  # python -P: no script directory on the path
        if sys.path:
            sys.path[0] = first
        else:
            sys.path.insert(0, first)

    def execute(self) -> None:
        """Run the program as ``__main__``; its exceptions propagate."""
        if self.kind == "script":
            # Absolute, as Python makes __main__.__file__: tracebacks
            # recorded in the timeline then stay readable from anywhere.
            runpy.run_path(os.path.abspath(self.name), run_name="__main__")
        else:
            runpy.run_module(self.name, run_name="__main__", alter_sys=True)


def _target(args: argparse.Namespace) -> Target:
    if args.module is not None:
        if not args.module:
            raise UsageError(
                "argument -m: expected a module name (see 'pyleakhunt run --help')"
            )
        return Target("module", args.module[0], args.module[1:])
    if not args.program:
        raise UsageError(
            "give a script to run, or -m module (see 'pyleakhunt run --help')"
        )
    if args.program[0] == "--":
        raise UsageError(
            "running a command after '--' is not supported yet; give a script "
            "or -m module"
        )
    return Target("script", args.program[0], args.program[1:])


class _CountingWatcher(LeakWatcher):
    """A LeakWatcher that counts the samples it takes (its series is thinned)."""

    taken = 0

    def sample(self) -> Snapshot:
        snapshot = super().sample()
        self.taken += 1
        return snapshot


def _system_exit_code(exc: SystemExit) -> int:
    """The exit status Python gives ``SystemExit(code)``, printing a message."""
    code = exc.code
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    sys.stderr.write("%s\n" % (code,))
    return EXIT_FAILURE


def _execute(target: Target) -> Tuple[int, Optional[BaseException]]:
    """Run *target*; return its exit code and the exception to report."""
    try:
        target.execute()
    except SystemExit as exc:
        return _system_exit_code(exc), None
    except KeyboardInterrupt as exc:
        return EXIT_INTERRUPTED, exc
    except BaseException as exc:
        return EXIT_FAILURE, exc
    return EXIT_OK, None


def _print_program_exception(exc: BaseException) -> None:
    """Print *exc* as Python would, without the frames of pyleakhunt and runpy."""
    tb = exc.__traceback__
    while tb is not None and (
        tb.tb_frame.f_globals is globals()
        or tb.tb_frame.f_globals.get("__name__") == "runpy"
    ):
        tb = tb.tb_next
    exc.__traceback__ = tb  # what Python's excepthook prints
    try:
        sys.excepthook(type(exc), exc, tb)
    except Exception:
        import traceback

        traceback.print_exception(type(exc), exc, tb)


def _flush_program_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            if stream is sys.stdout:
                _silence_stdout()
        except Exception:  # the program may have closed or replaced it
            pass


def timeline_path(directory: str, pid: Optional[int] = None) -> str:
    """``DIR/pyleakhunt-<pid>-<YYYYmmdd-HHMMSS>.plh``."""
    pid = os.getpid() if pid is None else pid
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(directory, "pyleakhunt-%d-%s.plh" % (pid, stamp))


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pyleakhunt run``."""
    parser.add_argument(
        "--nframe",
        type=_nframe,
        default=10,
        metavar="N",
        help="frames kept per traceback (default: 10)",
    )
    parser.add_argument(
        "--interval",
        type=_interval,
        default=1.0,
        metavar="S",
        help="seconds between samples (default: 1.0)",
    )
    parser.add_argument(
        "-o",
        dest="output_dir",
        default=".",
        metavar="DIR",
        help="directory of the timeline file (default: current directory)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the summary as one JSON line on stdout, after the program",
    )
    parser.add_argument(
        "-m",
        dest="module",
        nargs=argparse.REMAINDER,
        help="-m module [args ...]: run a library module as a script",
    )
    parser.add_argument(
        "program",
        nargs=argparse.REMAINDER,
        help="the script to run, then its arguments",
    )


def cmd_run(args: argparse.Namespace) -> int:
    """Run a program under tracing; return its exit code."""
    target = _target(args)
    saved_argv, saved_path = sys.argv, list(sys.path)
    try:
        target.prepare()
        target.check()
        with _reading(args.output_dir, "create"):
            os.makedirs(args.output_dir, exist_ok=True)
        path = timeline_path(args.output_dir)
        with _reading(path, "write"):
            watcher = _CountingWatcher(
                interval=args.interval, nframe=args.nframe, path=path
            )
        return _trace(target, watcher, path, args)
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path


def _trace(
    target: Target, watcher: _CountingWatcher, path: str, args: argparse.Namespace
) -> int:
    was_tracing = pyleakhunt.is_tracing()
    pyleakhunt.start(args.nframe)
    started = time.monotonic()
    try:
        watcher.start()
        code, exc = _execute(target)
    finally:
        try:
            watcher.stop()
        finally:
            if not was_tracing:
                pyleakhunt.stop()
    duration = time.monotonic() - started
    _flush_program_output()
    if exc is not None:
        _print_program_exception(exc)
        exc = None  # drop the program's frames
    suspects = watcher.suspects(5)
    if args.json:
        _print_run_json(
            {
                "command": "run",
                "timeline": path,
                "pid": os.getpid(),
                "exit_code": code,
                "samples": watcher.taken,
                "duration_s": duration,
                "sampling_error": (
                    None
                    if watcher.error is None
                    else "%s: %s" % (type(watcher.error).__name__, watcher.error)
                ),
                "suspects": [
                    report.suspect_json(s, os.getpid(), path) for s in suspects
                ],
            }
        )
    else:
        lines = report.run_summary(
            path,
            watcher.taken,
            duration,
            suspects,
            watcher.rule.min_samples,
            watcher.error,
        )
        sys.stderr.write("".join(line + "\n" for line in lines))
    return code


def _print_run_json(doc: Dict[str, Any]) -> None:
    """The run summary as one JSON line; a closed stdout loses only it."""
    try:
        _print_json(doc, compact=True)
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except ValueError:  # the program closed stdout
        pass


# --------------------------------------------------------------------------
# top, diff, suspects, demo


def add_top_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pyleakhunt top``."""
    parser.add_argument("file", metavar="FILE", help="a snapshot or timeline file")
    _add_report_options(parser, cumulative=True)


def cmd_top(args: argparse.Namespace) -> int:
    """Print the biggest call sites of a snapshot."""
    _check_cumulative(args)
    loaded = load_snapshot(args.file)
    stats = loaded.snapshot.top(args.limit, args.key, args.cumulative)
    if args.json:
        _print_json(report.top_json(loaded, stats, args.key, args.cumulative))
    else:
        _print_lines(report.top_lines(loaded, stats, args.key))
    return EXIT_OK


def add_diff_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pyleakhunt diff``."""
    parser.add_argument("old", metavar="OLD", help="the earlier snapshot or timeline")
    parser.add_argument("new", metavar="NEW", help="the later snapshot or timeline")
    _add_report_options(parser, cumulative=True)


def cmd_diff(args: argparse.Namespace) -> int:
    """Print the growth between two snapshots, the biggest first."""
    _check_cumulative(args)
    old = load_snapshot(args.old)
    new = load_snapshot(args.new)
    diffs = [
        diff
        for diff in new.snapshot.diff(old.snapshot, args.key, args.cumulative)
        if diff.size_diff or diff.count_diff
    ][: args.limit]
    if args.json:
        _print_json(report.diff_json(old, new, diffs, args.key, args.cumulative))
    else:
        _print_lines(report.diff_lines(old, new, diffs, args.key))
    return EXIT_OK


def add_suspects_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pyleakhunt suspects``."""
    parser.add_argument(
        "path",
        metavar="DIR_OR_FILE",
        help="a timeline file, or a directory of them (*.plh)",
    )
    _add_report_options(parser, cumulative=False)


def cmd_suspects(args: argparse.Namespace) -> int:
    """Rank the call sites that kept growing in one or more timelines."""
    paths = timeline_paths(args.path)
    results = []
    failed = False
    for path in paths:
        try:
            results.append(analyse_timeline(path, args.key))
        except CLIError as exc:
            if len(paths) == 1:
                raise
            _error(str(exc))
            failed = True
    if args.json:
        _print_json(report.suspects_json(results, args.limit))
    else:
        lines: List[str] = []
        for result in results:
            if lines:
                lines.append("")
            lines += report.suspects_lines(
                result, args.limit, args.key, DEFAULT_RULE.min_samples
            )
        _print_lines(lines)
    return EXIT_BAD_FILE if failed else EXIT_OK


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pyleakhunt demo``."""
    parser.add_argument(
        "--requests", type=int, default=20_000, help="requests to serve (20000)"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """Find the leak of a small demo service."""
    from . import demo

    return demo.run(sys.stdout, requests=args.requests)


# --------------------------------------------------------------------------
# The parser and main


#: name -> (help, usage or None, JSON shapes, add arguments, run)
COMMANDS = {
    "run": (
        "run a Python program with tracing on and record its timeline",
        "pyleakhunt run [-h] [--nframe N] [--interval S] [-o DIR] [--json] "
        "(script.py | -m module) [args ...]",
        (JSON_RUN, JSON_SUSPECTS),
        add_run_arguments,
        cmd_run,
    ),
    "top": (
        "the biggest call sites of a snapshot or of a timeline's last entry",
        None,
        (JSON_TOP,),
        add_top_arguments,
        cmd_top,
    ),
    "diff": (
        "the growth between two snapshots, the biggest first",
        None,
        (JSON_DIFF,),
        add_diff_arguments,
        cmd_diff,
    ),
    "suspects": (
        "the call sites that kept growing in timelines",
        None,
        (JSON_SUSPECTS,),
        add_suspects_arguments,
        cmd_suspects,
    ),
    "demo": (
        "find a leak in a small demo service",
        None,
        (),
        add_demo_arguments,
        cmd_demo,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pyleakhunt`` command."""
    parser = _Parser(
        prog="pyleakhunt",
        description="Hunt memory leaks in Python programs.",
        epilog=_epilog(JSON_TOP, JSON_DIFF, JSON_SUSPECTS, JSON_RUN),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version="%(prog)s " + pyleakhunt.__version__
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for name, (summary, usage, shapes, add_arguments, run) in COMMANDS.items():
        sub = commands.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            usage=usage,
            epilog=_epilog(*shapes),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_arguments(sub)
        sub.set_defaults(func=run)
    return parser


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the exit-time flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Optional[List[str]] = None) -> int:
    """Run the ``pyleakhunt`` command with *argv*; return its exit code."""
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help, --version
            return exc.code if isinstance(exc.code, int) else EXIT_OK
        code = args.func(args)
        try:
            sys.stdout.flush()
        except ValueError:  # closed by the program that run ran
            pass
        return code
    except CLIError as exc:
        _error(str(exc))
        return exc.code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
