"""The ``pyleakhunt`` command (also ``python -m pyleakhunt``).

Usage::

    pyleakhunt run [--nframe N] [--sample SIZE] [--interval S] [-o DIR] [--json]
                   (script.py | -m module | [--signal NAME] -- COMMAND) [args ...]
    pyleakhunt top FILE [-n N] [--key KEY] [--cumulative]
                   [--json | --format FORMAT] [-o FILE] [--value bytes|count]
    pyleakhunt diff OLD NEW [-n N] [--key KEY] [--cumulative]
                   [--json | --format FORMAT] [-o FILE] [--value bytes|count]
    pyleakhunt suspects DIR_OR_FILE [-n N] [--key KEY] [--json]
    pyleakhunt demo [--seconds S | --requests N]

``run`` runs a Python program in this process with tracing on from its first
line (every allocation, or one per SIZE bytes on average with ``--sample``),
samples it every S seconds into a timeline file
``DIR/pyleakhunt-<pid>-<YYYYmmdd-HHMMSS>.plh``, and when the program ends
prints a summary (the timeline, the top suspects) on stderr.  With
``-- COMMAND`` (``gunicorn app:app``, ``python3 app.py``...) it runs the
command in a child process with ``PYLEAKHUNT`` set (see
`pyleakhunt.production`): every Python process the command starts, forked
and spawned workers included, traces from its first line into its own
timeline in DIR; the summary covers them all.  ``top`` shows
the biggest call sites of a snapshot file or of the last entry of a timeline,
``diff`` the growth between two such files, ``suspects`` the call sites that
kept growing in a timeline, or in every timeline of a directory.  KEY is
``userline`` (the default, ``lineno`` with ``--cumulative``): the most
recent line in the user's code, so that what json, logging or an installed
package allocates for a line of the program counts under that line
(`pyleakhunt.userframe`); or ``lineno`` (the most recent line anywhere, as
tracemalloc), ``filename`` or ``traceback``.  Each row shows the user's
line first and, beneath it, the library frame that allocated, as ``via
json/decoder.py:353``.

``top`` and ``diff`` write FORMAT ``text`` (the default), ``json`` (the same
as ``--json``), ``pprof`` (gzipped profile.proto for ``go tool pprof``:
``-o FILE`` needed on a terminal) or ``folded`` (folded stacks for
flamegraph.pl and speedscope, valued in bytes or, with ``--value count``,
blocks), on stdout or to ``-o FILE``.  pprof and folded output hold every
call site with its whole traceback (``-n`` does not apply); for ``diff``
they hold the growth: the call sites whose live size grew, valued by how
much.  See `pyleakhunt.export`.

JSON output (``--json``, on stdout).  Sizes are in bytes, timestamps in
seconds since the epoch, tracebacks lists of ``[filename, lineno]`` with the
most recent call first, ``filename``/``lineno`` the most recent frame of
the key (``lineno`` is 0 with ``--key filename``), ``user_frame`` the most
recent ``[filename, lineno]`` in the user's code (of the biggest call site
under the key) and ``via`` the library frame that allocated, or null::

    top:      {"command": "top", "file", "kind": "snapshot"|"timeline",
               "entries": N|null, "truncated_tail", "aggregated", "pid",
               "timestamp", "traceback_limit", "estimated", "sample_bytes",
               "lost_blocks", "total_size", "total_count", "key_type",
               "cumulative", "statistics": [{"filename", "lineno", "size",
               "count", "traceback", "user_frame", "via"}, ...]}
    diff:     {"command": "diff", "old": {FILE}, "new": {FILE}, "estimated",
               "lost_blocks", "key_type", "cumulative", "statistics":
               [{"filename", "lineno", "size", "size_diff", "count",
               "count_diff", "traceback", "user_frame", "via"}, ...]}
              ({FILE}: the keys of top from "file" to "total_count"; the
              biggest growth first, unchanged call sites left out)
    suspects: [{"file", "pid", "filename", "lineno", "size", "count",
               "growth_bytes", "growth_bytes_per_s",
               "growth_bytes_per_snapshot", "consistency", "samples",
               "duration_s", "estimated", "traceback", "user_frame",
               "via"}, ...]
    run:      {"command": "run", "timeline", "pid", "exit_code", "samples",
               "duration_s", "sampling_error": str|null,
               "suspects": [SUSPECT, ...]}
              (one line after the program's output; SUSPECT as in suspects;
              with -- COMMAND also "timelines": [path, ...], one per traced
              process, "timeline" being the command's own or null, "pid" the
              command's)

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
         script, module or command given to run cannot be found
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
import re
import runpy
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pyleakhunt

from . import export, production, report
from .fileformat import (
    KIND_TIMELINE,
    MAGIC,
    FileFormatError,
    iter_timeline,
)
from .growth import DEFAULT_RULE, GrowthRule, analyse_series, reduce_snapshot
from .report import LoadedSnapshot, TimelineSuspects, exit_codes_text
from .snapshot import Snapshot, Traceback
from .units import parse_size
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
        "script, module or command given to run cannot be found"
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
KEY_CHOICES = ("userline", "lineno", "filename", "traceback")
#: The default grouping: by the most recent line in the user's code, so that
#: what json, logging or an ORM allocates for a line of the program is
#: counted under that line (`pyleakhunt.userframe`).
DEFAULT_KEY = "userline"

JSON_TOP = """\
top:      {"command": "top", "file", "kind": "snapshot"|"timeline",
           "entries": N|null, "truncated_tail", "aggregated", "pid",
           "timestamp", "traceback_limit", "estimated", "sample_bytes",
           "lost_blocks", "total_size", "total_count", "key_type",
           "cumulative", "statistics": [{"filename", "lineno", "size",
           "count", "traceback", "user_frame", "via"}, ...]}"""
JSON_DIFF = """\
diff:     {"command": "diff", "old": {FILE}, "new": {FILE}, "estimated",
           "lost_blocks", "key_type", "cumulative", "statistics":
           [{"filename", "lineno", "size", "size_diff", "count",
           "count_diff", "traceback", "user_frame", "via"}, ...]}
          ({FILE}: the keys of top from "file" to "total_count"; the
          biggest growth first, unchanged call sites left out)"""
JSON_SUSPECTS = """\
suspects: [{"file", "pid", "filename", "lineno", "size", "count",
           "growth_bytes", "growth_bytes_per_s",
           "growth_bytes_per_snapshot", "consistency", "samples",
           "duration_s", "estimated", "traceback", "user_frame",
           "via"}, ...]"""
JSON_RUN = """\
run:      {"command": "run", "timeline", "pid", "exit_code", "samples",
           "duration_s", "sampling_error": str|null,
           "suspects": [SUSPECT, ...]}
          (one line after the program's output; SUSPECT as in suspects;
          with -- COMMAND also "timelines": [path, ...], one per traced
          process, "timeline" being the command's own or null, "pid" the
          command's)"""
JSON_NOTES = """\
Sizes in bytes, timestamps in seconds since the epoch; tracebacks are lists
of [filename, lineno], the most recent call first; filename/lineno are the
key's most recent frame (lineno 0 with --key filename); user_frame is the
most recent [filename, lineno] in your code, via the library frame that
allocated, or null.  "estimated": sampled
tracing, figures are estimates; "lost_blocks" > 0: figures are incomplete."""


def _epilog(*json_shapes: str) -> str:
    parts = []
    if json_shapes:
        parts.append("JSON output (--json, on stdout):")
        parts += ["  " + line for shape in json_shapes for line in shape.splitlines()]
        parts += ["  " + line for line in JSON_NOTES.splitlines()]
        parts.append("")
    parts.append(exit_codes_text(EXIT_CODES))
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
    path: str, key_type: str = DEFAULT_KEY, rule: GrowthRule = DEFAULT_RULE
) -> TimelineSuspects:
    """The suspects of one timeline file, read entry by entry
    (`pyleakhunt.growth.analyse_series`)."""
    with _reading(path):
        if file_kind(path) != "timeline":
            raise CLIError(
                "%s: this is a snapshot file, not a timeline; 'suspects' needs "
                "a timeline written by 'pyleakhunt run' or LeakWatcher(path=...) "
                "(see 'pyleakhunt top' for a snapshot)" % path
            )
        reader = TimelineReader(path)
        series = analyse_series(reader, key_type, rule)
    return TimelineSuspects(
        path=path,
        pid=series.pid,
        samples=series.samples,
        first_timestamp=series.first_timestamp,
        last_timestamp=series.last_timestamp,
        suspects=series.suspects,
        estimated=series.estimated,
        lost_blocks=series.lost_blocks,
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


def _sample_size(text: str) -> Optional[int]:
    if text.strip().lower() == "exact":
        return None
    try:
        value = parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "SIZE must be a size such as 512KiB, or exact, not %r" % text
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError("SIZE must be at least 1 byte")
    return value


def _dump_signal(text: str) -> Optional[int]:
    try:
        return production.parse_settings("signal=" + text).dump_signal
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
        default=None,
        help=(
            "group by the most recent line in your code (userline, the "
            "default; lineno with --cumulative), by the most recent line "
            "anywhere (lineno), by file, or by whole traceback"
        ),
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
    """Settle the key: `DEFAULT_KEY`, or ``lineno`` with --cumulative
    (which counts every frame, the user's among them)."""
    if args.key is None:
        args.key = "lineno" if args.cumulative else DEFAULT_KEY
    if args.cumulative and args.key not in ("lineno", "filename"):
        raise UsageError("--cumulative needs --key lineno or --key filename")


# --------------------------------------------------------------------------
# run


@dataclass
class Target:
    """What ``run`` executes: a script, a module or a command, with its
    arguments.

    *kind* is ``"script"`` or ``"module"`` (run in this process by
    `prepare` and `execute`), or ``"command"`` (``-- COMMAND``: run in a
    child process by `_run_command`).
    """

    kind: str
    name: str
    args: List[str]

    def check(self) -> None:
        """Raise CLIError if the script, module or command cannot be found."""
        if self.kind == "command":
            if shutil.which(self.name) is None:
                raise CLIError("command not found: %r" % self.name)
            return
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

    def execute(self) -> Dict[str, Any]:
        """Run the program as ``__main__``; its exceptions propagate.

        Returns the program's module globals (runpy's copy of them): what
        the program still held when it ended stays alive as long as the
        caller keeps them.
        """
        if self.kind == "script":
            # Absolute, as Python makes __main__.__file__: tracebacks
            # recorded in the timeline then stay readable from anywhere.
            return runpy.run_path(os.path.abspath(self.name), run_name="__main__")
        return runpy.run_module(self.name, run_name="__main__", alter_sys=True)


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
        if len(args.program) < 2:
            raise UsageError("give a command after '--' (see 'pyleakhunt run --help')")
        return Target("command", args.program[1], args.program[2:])
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


def _execute(target: Target) -> Tuple[int, Optional[BaseException], Any]:
    """Run *target*; return its exit code, the exception to report, and
    what keeps the program's objects alive.

    The last sample must see what the program held when it ended: runpy
    releases the module's namespace as it returns, and a leak that grew in
    every sample would then end with a drop, which reads as a plateau.  The
    third value holds that namespace: the globals runpy returns or, when the
    program raised (``sys.exit()`` included), the exception, whose
    traceback holds the program's frames and their globals.
    """
    try:
        namespace = target.execute()
    except SystemExit as exc:
        return _system_exit_code(exc), None, exc
    except KeyboardInterrupt as exc:
        return EXIT_INTERRUPTED, exc, exc
    except BaseException as exc:
        return EXIT_FAILURE, exc, exc
    return EXIT_OK, None, namespace


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


#: ``DIR/pyleakhunt-<pid>-<YYYYmmdd-HHMMSS>.plh``: one name for every
#: timeline, whoever writes it.
timeline_path = production.timeline_path


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
        "--sample",
        type=_sample_size,
        default=None,
        metavar="SIZE",
        help=(
            "sampled tracing: record one allocation per SIZE bytes on average "
            "(for example 512KiB); figures become estimates "
            "(default: trace every allocation)"
        ),
    )
    parser.add_argument(
        "--signal",
        dest="dump_signal",
        type=_dump_signal,
        default=production.DEFAULT_SIGNAL,
        metavar="NAME",
        help=(
            "with -- COMMAND: the signal that makes a traced process write a "
            "snapshot file in DIR: SIGUSR1, SIGUSR2 (default), SIGRTMIN+N "
            "(gunicorn workers reset SIGUSR2), or none"
        ),
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
        help=(
            "directory of the timeline file, or with -- COMMAND of the "
            "timelines, one per process (default: current directory)"
        ),
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
        help=(
            "the script to run, then its arguments; or '--' then a command "
            "(gunicorn app:app, python3 app.py...) to run in a child process, "
            "tracing every Python process it starts"
        ),
    )


def cmd_run(args: argparse.Namespace) -> int:
    """Run a program under tracing; return its exit code."""
    target = _target(args)
    if target.kind == "command":
        target.check()
        return _run_command(target, args)
    saved_argv, saved_path = sys.argv, list(sys.path)
    try:
        target.prepare()
        target.check()
        with _reading(args.output_dir, "create"):
            os.makedirs(args.output_dir, exist_ok=True)
        path = timeline_path(args.output_dir)
        with _reading(path, "write"):
            watcher = _CountingWatcher(
                interval=args.interval,
                key_type=DEFAULT_KEY,
                nframe=args.nframe,
                path=path,
            )
        return _trace(target, watcher, path, args)
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path


def _trace(
    target: Target, watcher: _CountingWatcher, path: str, args: argparse.Namespace
) -> int:
    if production.is_started():
        production.stop()  # PYLEAKHUNT was set for us: run takes over
    was_tracing = pyleakhunt.is_tracing()
    try:
        pyleakhunt.start(args.nframe, sample_bytes=args.sample)
    except ValueError as exc:  # already tracing at another rate
        raise UsageError(str(exc)) from None
    started = time.monotonic()
    keep_alive: Any = None
    try:
        watcher.start()
        code, exc, keep_alive = _execute(target)
    finally:
        try:
            watcher.stop()  # its last sample, while keep_alive holds the program's
        finally:
            del keep_alive  # the program's objects may go now
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


#: Signals a supervisor sends that ``run -- COMMAND`` passes on to the
#: command.  SIGINT and SIGQUIT are not among them: the terminal sends
#: Ctrl-C and Ctrl-backslash to the command itself (its process group).
FORWARDED_SIGNALS = tuple(
    getattr(signal, name)
    for name in (
        "SIGTERM",
        "SIGHUP",
        "SIGUSR1",
        "SIGUSR2",
        "SIGWINCH",
        "SIGTTIN",
        "SIGTTOU",
    )
    if hasattr(signal, name)
)
_TIMELINE_NAME = re.compile(r"^pyleakhunt-(\d+)-\d{8}-\d{6}(?:-\d+)?\.plh$")


def _timeline_files(directory: str) -> Dict[str, int]:
    """The timelines named by `timeline_path` in *directory*: path -> pid."""
    try:
        names = os.listdir(directory)
    except OSError:
        return {}
    found = {}
    for name in names:
        match = _TIMELINE_NAME.match(name)
        if match:
            found[os.path.join(directory, name)] = int(match.group(1))
    return found


def _spawn(argv: List[str], env: Dict[str, str]) -> Tuple[int, int]:
    """Run *argv* to its end, passing on `FORWARDED_SIGNALS`; return its
    exit status (128 + N when killed by signal N, as a shell says) and pid."""
    try:
        child = subprocess.Popen(argv, env=env)
    except OSError as exc:
        raise CLIError("cannot run %s: %s" % (argv[0], exc.strerror or exc)) from None

    def forward(signum: int, frame: Any) -> None:
        try:
            child.send_signal(signum)
        except OSError:
            pass

    previous: Dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in FORWARDED_SIGNALS:
            previous[signum] = signal.signal(signum, forward)
        # After the spawn, so that the command does not inherit SIG_IGN.
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        code = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return (128 - code if code < 0 else code), child.pid


def _run_command(target: Target, args: argparse.Namespace) -> int:
    """``run -- COMMAND``: run the command with ``PYLEAKHUNT`` set, then sum
    up the timelines its Python processes wrote."""
    directory = os.path.abspath(args.output_dir)
    if "," in directory:
        raise UsageError(
            "-o %s: the directory cannot contain a comma (PYLEAKHUNT separates "
            "its options with commas)" % directory
        )
    with _reading(directory, "create"):
        os.makedirs(directory, exist_ok=True)
    settings = production.Settings(
        sample_bytes=args.sample or 0,
        nframe=args.nframe,
        directory=directory,
        interval=args.interval,
        dump_signal=args.dump_signal,
    )
    env = dict(os.environ)
    env[production.ENV_VAR] = settings.to_environment()
    before = set(_timeline_files(directory))
    started = time.monotonic()
    code, pid = _spawn([target.name, *target.args], env)
    duration = time.monotonic() - started
    written = {
        path: owner
        for path, owner in _timeline_files(directory).items()
        if path not in before
    }
    results: List[TimelineSuspects] = []
    for path in sorted(written, key=lambda p: (written[p] != pid, p)):
        try:
            results.append(analyse_timeline(path))
        except CLIError as exc:
            _warn(str(exc))
    own = [r for r in results if written[r.path] == pid]
    if args.json:
        _print_run_json(
            {
                "command": "run",
                "timeline": own[0].path if own else None,
                "timelines": [r.path for r in results],
                "pid": pid,
                "exit_code": code,
                "samples": own[0].samples if own else 0,
                "duration_s": duration,
                "sampling_error": None,
                "suspects": report.suspects_json(results, 5),
            }
        )
    else:
        sys.stderr.write(
            "".join(line + "\n" for line in _command_summary(directory, results))
        )
    return code


def _command_summary(directory: str, results: List[TimelineSuspects]) -> List[str]:
    """What ``run -- COMMAND`` says on stderr when the command ends."""
    if not results:
        return [
            "pyleakhunt: warning: no timeline was written in %s: no Python "
            "process of the command traced itself (pyleakhunt must be "
            "installed, with its autostart hook, in the environment of the "
            "Python the command runs; see docs/production.md)" % directory
        ]
    lines = [
        "pyleakhunt: %s in %s (pids %s)"
        % (
            report.plural(len(results), "timeline"),
            directory,
            ", ".join(str(r.pid) for r in results),
        )
    ]
    for result in results:
        lines += [
            "  " + line if line else line
            for line in report.suspects_lines(
                result, 5, DEFAULT_KEY, DEFAULT_RULE.min_samples
            )
        ]
    lines.append("pyleakhunt: details: pyleakhunt suspects %s" % directory)
    return lines


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


#: What ``top`` and ``diff`` can write.
OUTPUT_FORMATS = ("text", "json", "pprof", "folded")


def _add_output_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--format",
        choices=OUTPUT_FORMATS,
        default=None,
        help=(
            "text (default), json (as --json), pprof (gzipped profile.proto "
            "for go tool pprof) or folded (folded stacks for flamegraph.pl "
            "and speedscope); pprof and folded hold %s, with whole "
            "tracebacks" % what
        ),
    )
    parser.add_argument(
        "-o",
        dest="output",
        metavar="FILE",
        default=None,
        help="write to FILE instead of stdout",
    )
    parser.add_argument(
        "--value",
        choices=export.FOLDED_VALUES,
        default="bytes",
        help="folded: the value of a stack, bytes (default) or count (blocks)",
    )


def _output_format(args: argparse.Namespace) -> str:
    """The format asked for with --format or --json."""
    if args.json and args.format not in (None, "json"):
        raise UsageError("--json and --format %s disagree" % args.format)
    fmt = args.format or ("json" if args.json else "text")
    if fmt in ("pprof", "folded") and (
        args.cumulative or args.key not in ("lineno", DEFAULT_KEY)
    ):
        raise UsageError(
            "--format %s holds whole tracebacks: --key and --cumulative apply "
            "to text and json only" % fmt
        )
    if fmt == "pprof" and args.output in (None, "-") and sys.stdout.isatty():
        raise UsageError("pprof output is binary: give -o FILE")
    return fmt


def _write_output(args: argparse.Namespace, data: Any) -> None:
    """*data* (text or, for pprof, bytes) to -o FILE or stdout."""
    if args.output in (None, "-"):
        if isinstance(data, bytes):
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(data)
        return
    with _reading(args.output, "write"):
        if isinstance(data, bytes):
            with open(args.output, "wb") as f:
                f.write(data)
        else:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(data)


def _write_profile(args: argparse.Namespace, fmt: str, profile: Any) -> None:
    if fmt == "pprof":
        _write_output(args, export.pprof_bytes(profile))
    else:
        lines = export.folded_lines(profile, args.value)
        _write_output(args, "".join(line + "\n" for line in lines))


def add_top_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pyleakhunt top``."""
    parser.add_argument("file", metavar="FILE", help="a snapshot or timeline file")
    _add_report_options(parser, cumulative=True)
    _add_output_options(parser, "the live memory of every call site")


def cmd_top(args: argparse.Namespace) -> int:
    """Print (or export) the biggest call sites of a snapshot."""
    _check_cumulative(args)
    fmt = _output_format(args)
    loaded = load_snapshot(args.file)
    if fmt in ("pprof", "folded"):
        _write_profile(args, fmt, export.live_memory(loaded.snapshot))
        return EXIT_OK
    stats = loaded.snapshot.top(args.limit, args.key, args.cumulative)
    full = _full_tracebacks(args, loaded.snapshot)
    if fmt == "json":
        doc = report.top_json(loaded, stats, args.key, args.cumulative, full)
        _write_output(args, report.dumps(doc) + "\n")
    else:
        lines = report.top_lines(loaded, stats, args.key, full)
        _write_output(args, "".join(line + "\n" for line in lines))
    return EXIT_OK


def _full_tracebacks(
    args: argparse.Namespace, snapshot: Snapshot
) -> Dict[Traceback, Traceback]:
    """Each row's key -> the whole traceback of its biggest site, where the
    user's frame of a one-frame key (``lineno``) is found."""
    if args.cumulative:
        return {}  # a row is one frame of many tracebacks
    return reduce_snapshot(snapshot, args.key, exclude_tracer=False)[1]


def add_diff_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pyleakhunt diff``."""
    parser.add_argument("old", metavar="OLD", help="the earlier snapshot or timeline")
    parser.add_argument("new", metavar="NEW", help="the later snapshot or timeline")
    _add_report_options(parser, cumulative=True)
    _add_output_options(
        parser, "the growth: every call site whose live size grew, by how much"
    )


def cmd_diff(args: argparse.Namespace) -> int:
    """Print (or export) the growth between two snapshots, the biggest first."""
    _check_cumulative(args)
    fmt = _output_format(args)
    old = load_snapshot(args.old)
    new = load_snapshot(args.new)
    if fmt in ("pprof", "folded"):
        _write_profile(args, fmt, export.growth(old.snapshot, new.snapshot))
        return EXIT_OK
    diffs = [
        diff
        for diff in new.snapshot.diff(old.snapshot, args.key, args.cumulative)
        if diff.size_diff or diff.count_diff
    ][: args.limit]
    full = dict(_full_tracebacks(args, old.snapshot))
    full.update(_full_tracebacks(args, new.snapshot))
    if fmt == "json":
        doc = report.diff_json(old, new, diffs, args.key, args.cumulative, full)
        _write_output(args, report.dumps(doc) + "\n")
    else:
        lines = report.diff_lines(old, new, diffs, args.key, full)
        _write_output(args, "".join(line + "\n" for line in lines))
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
            results.append(analyse_timeline(path, args.key or DEFAULT_KEY))
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
                result, args.limit, args.key or DEFAULT_KEY, DEFAULT_RULE.min_samples
            )
        _print_lines(lines)
    return EXIT_BAD_FILE if failed else EXIT_OK


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pyleakhunt demo``."""

    def seconds(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = 0.0
        if not 0 < value <= 3600:
            raise argparse.ArgumentTypeError(
                "--seconds must be a number of seconds from 0 to 3600, not %s" % text
            )
        return value

    amount = parser.add_mutually_exclusive_group()
    amount.add_argument(
        "--seconds",
        type=seconds,
        default=5.0,
        metavar="S",
        help="drive traffic for S seconds (5)",
    )
    amount.add_argument(
        "--requests",
        type=lambda text: _positive_int(text, "--requests", 10_000_000),
        default=None,
        metavar="N",
        help="drive N requests instead",
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """Find the leak of a small demo web service."""
    from . import demo

    return demo.run(sys.stdout, requests=args.requests, seconds=args.seconds)


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pyleakhunt report``."""
    parser.add_argument(
        "path",
        metavar="PATH",
        help="a timeline, a snapshot, or (with PATH2) the older of two snapshots",
    )
    parser.add_argument(
        "path2",
        metavar="PATH2",
        nargs="?",
        default=None,
        help="the newer snapshot: the report shows what grew from PATH to it",
    )
    parser.add_argument(
        "-o",
        dest="output",
        metavar="FILE",
        default=None,
        help="write the HTML to FILE (default: beside the input, .html)",
    )


def cmd_report(args: argparse.Namespace) -> int:
    """Write a self-contained HTML report and print its path."""
    from .export import html_report

    output = args.output or os.path.splitext(args.path2 or args.path)[0] + ".html"
    if args.path2 is not None:
        old, new = load_snapshot(args.path), load_snapshot(args.path2)
        page = html_report.diff_page(args.path, old.snapshot, args.path2, new.snapshot)
    else:
        with _reading(args.path):
            kind = file_kind(args.path)
        if kind == "timeline":
            reader = TimelineReader(args.path)
            with _reading(args.path):
                page = html_report.timeline_page(
                    args.path,
                    reader,
                    # The reader shows its own progress for big files.
                    progress=html_report.Progress(
                        reading=os.path.getsize(args.path) < PROGRESS_MIN_BYTES
                    ),
                    truncated_tail=lambda: reader.truncated_tail,
                )
        else:
            loaded = load_snapshot(args.path)
            page = html_report.snapshot_page(args.path, loaded.snapshot)
    with _reading(output, "write"):
        with open(output, "w", encoding="utf-8") as f:
            f.write(page.render())
    print(output)
    return EXIT_OK


# --------------------------------------------------------------------------
# The parser and main


#: name -> (help, usage or None, JSON shapes, add arguments, run)
COMMANDS = {
    "run": (
        "run a Python program with tracing on and record its timeline",
        "pyleakhunt run [-h] [--nframe N] [--sample SIZE] [--interval S] "
        "[-o DIR] [--json] (script.py | -m module | [--signal NAME] -- COMMAND) "
        "[args ...]",
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
    "report": (
        "a self-contained HTML report: memory over time, suspects, flame graphs",
        None,
        (),
        add_report_arguments,
        cmd_report,
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
    # Commands that live in their own subpackages register themselves.
    for register in _registered_elsewhere():
        register(commands)
    return parser


def _registered_elsewhere() -> List[Callable[[Any], None]]:
    from .attach import register as register_attach
    from .census.cli import register as register_census

    return [register_attach, register_census]


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
