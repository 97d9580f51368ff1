"""Reading the tracer's files for the commands: snapshots, timelines
streamed entry by entry with progress on a terminal, and their errors as
one line (`FileError`)."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator, List

from .. import report
from ..fileformat import HEADER_SIZE, FileFormatError, file_kind, iter_timeline
from ..growth import DEFAULT_RULE, GrowthRule, analyse_series
from ..progress import StatusLine, is_terminal
from ..report import LoadedSnapshot, TimelineSuspects
from ..snapshot import Snapshot
from . import FileError, warn
from .options import DEFAULT_KEY

#: Files at least this big show progress on stderr while loading (on a TTY).
PROGRESS_MIN_BYTES = 50 * 1024 * 1024
#: Suffixes of the timeline files ``suspects`` looks for in a directory.
TIMELINE_SUFFIXES = (".plh", ".plht")


def stderr_is_tty() -> bool:
    """Is stderr a terminal (where progress lines are shown)?"""
    return is_terminal(sys.stderr)


@contextlib.contextmanager
def reading(path: str, action: str = "read") -> Iterator[None]:
    """Turn the errors of reading (or *action*) *path* into one-line FileErrors."""
    try:
        yield
    except FileFormatError as exc:
        raise FileError("%s: %s" % (path, exc)) from None
    except BrokenPipeError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise FileError("cannot %s %s: %s" % (action, path, reason)) from None


class Progress:
    """Progress of a long load on stderr, shown only on a TTY for big files."""

    def __init__(self, path: str, size: int) -> None:
        self.path = path
        self.size = size
        enabled = size >= PROGRESS_MIN_BYTES and stderr_is_tty()
        self.line = StatusLine(delay=0.0, enabled=enabled)

    def loading(self) -> None:
        """Say once that a big file is being loaded."""
        if self.line.enabled:
            sys.stderr.write(
                "pyleakhunt: loading %s (%.0f MiB)...\n"
                % (self.path, self.size / (1024 * 1024))
            )
            sys.stderr.flush()

    def entries(self, count: int, offset: int) -> None:
        """Show how many timeline entries are read (at most 5 times a second)."""
        if not self.line.enabled:
            return
        percent = 100 * offset / self.size if self.size else 100
        self.line.update(
            "pyleakhunt: reading %s: %s (%.0f%%)"
            % (self.path, report.plural(count, "entry", "entries"), percent)
        )

    def done(self, count: int) -> None:
        """End the progress line, if one was shown."""
        self.line.finish(
            "pyleakhunt: reading %s: %s, done"
            % (self.path, report.plural(count, "entry", "entries"))
        )


class TimelineReader:
    """The entries of a timeline file, streamed one at a time.

    A last entry cut short (the process was killed while writing it) is
    skipped with a warning on stderr, and `truncated_tail` is set.  With
    *columns*, the entries are `pyleakhunt._raw.RawColumns` (see
    `pyleakhunt.fileformat.iter_timeline`).
    """

    def __init__(self, path: str, columns: bool = False) -> None:
        self.path = path
        self.columns = columns
        self.entries = 0
        self.truncated_tail = False

    def __iter__(self) -> Iterator[Any]:
        with open(self.path, "rb") as f:
            progress = Progress(self.path, os.fstat(f.fileno()).st_size)
            end = HEADER_SIZE  # just after the last complete entry
            try:
                entries = iter_timeline(
                    f, allow_truncated_tail=True, columns=self.columns
                )
                for raw in entries:
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
            warn(
                "%s: the last entry is truncated (the process was probably "
                "killed while writing it); read the %d complete entries"
                % (self.path, self.entries)
            )


def load_snapshot(path: str) -> LoadedSnapshot:
    """A snapshot file, or the last entry of a timeline file."""
    with reading(path):
        if file_kind(path) == "timeline":
            reader = TimelineReader(path)
            last = None
            for raw in reader:
                last = raw
            if last is None:
                raise FileError("%s: the timeline has no complete entry" % path)
            return LoadedSnapshot(
                path,
                Snapshot._from_raw(last),
                kind="timeline",
                entries=reader.entries,
                truncated_tail=reader.truncated_tail,
            )
        Progress(path, os.path.getsize(path)).loading()
        return LoadedSnapshot(path, Snapshot.load(path))


def analyse_timeline(
    path: str, key_type: str = DEFAULT_KEY, rule: GrowthRule = DEFAULT_RULE
) -> TimelineSuspects:
    """The suspects of one timeline file, read entry by entry
    (`pyleakhunt.growth.analyse_series`)."""
    with reading(path):
        if file_kind(path) != "timeline":
            raise FileError(
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
            raise FileError("cannot read %s: No such file or directory" % path)
        return [path]
    with reading(path):
        names = sorted(os.listdir(path))
    found = []
    for name in names:
        full = os.path.join(path, name)
        if not name.endswith(TIMELINE_SUFFIXES) or not os.path.isfile(full):
            continue
        try:
            with reading(full):
                kind = file_kind(full)
        except FileError as exc:
            warn("skipping %s" % exc)
            continue
        if kind == "timeline":
            found.append(full)
    if not found:
        raise FileError("%s: no timeline files (*.plh) in this directory" % path)
    return found
