"""The pages of ``pyleakhunt report``: a timeline, a snapshot, or a diff.

The caller reads the files (`pyleakhunt.cli` does, with its one-line
errors); this module turns what was read into a `pyleakhunt.export.html.Page`:

- `timeline_page`: memory over time (traced memory, RSS when the timeline
  recorded it, the top suspects' live sizes), the suspects table with the
  rule of `pyleakhunt.growth`, and two flame graphs: the live memory at the
  last sample and the growth from the first sample to the last;
- `snapshot_page`: the live memory of one snapshot;
- `diff_page`: the growth between two snapshots, and the newer one's live
  memory.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import operator
import time
from array import array
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from .._raw import RawColumns, RawFrames, RawSnapshot
from ..growth import (
    DEFAULT_RULE,
    TRACER_FILES,
    GrowthRule,
    is_closing,
    suspects_of_series,
)
from ..progress import StatusLine
from ..report import format_duration, format_time, no_suspect_reason, plural
from ..snapshot import Snapshot, Traceback, raw_group_key
from ..units import format_size
from . import stacks
from .html import Page, Series, records_of, suspect_rows

__all__ = [
    "RSS_ATTR",
    "CHART_SUSPECTS",
    "Progress",
    "diff_page",
    "snapshot_page",
    "timeline_page",
]

#: The entry attribute holding the process's resident set size, in bytes.
RSS_ATTR = "rss_bytes"
#: How many suspects the memory chart plots beside the totals.
CHART_SUSPECTS = 5
#: Suspects listed in the table.
TABLE_SUSPECTS = 50


class Progress:
    """Progress of a long report on stderr: shown only when stderr is a
    terminal, and only once the work has run for `delay` seconds."""

    delay = 2.0

    def __init__(
        self,
        stream: Any = None,
        clock: Callable[[], float] = time.monotonic,
        reading: bool = True,
    ):
        #: False when the reader of the file shows its own progress: the
        #: entries read are then not counted here too, on the same line.
        self.reading = reading
        self.line = StatusLine(stream, self.delay, clock=clock)

    def update(self, text: str) -> None:
        """Show *text* (at most 5 times a second, after `delay`)."""
        self.line.update(text)

    def done(self, text: str = "done") -> None:
        """End the progress line, if one was shown."""
        self.line.finish("pyleakhunt: report: " + text)


def _accuracy(estimated: bool, lost_blocks: int) -> List[str]:
    lines = []
    if estimated:
        lines.append(
            "Sampled tracing: sizes and counts are unbiased estimates (marked ~)."
        )
    if lost_blocks:
        lines.append(
            "Incomplete: the tracer failed to record %d blocks (its own memory "
            "ran out); the figures are too low." % lost_blocks
        )
    return lines


#: A site's traceback, count, size and low-water mark.
_TRACEBACK = operator.itemgetter(1)
_COUNT = operator.itemgetter(3)
_SIZE = operator.itemgetter(4)
_LOW = operator.itemgetter(5)

#: A timeline entry as the report reads it.
Entry = Union[RawSnapshot, RawColumns]


def _site_columns(
    entry: Entry,
) -> Tuple[
    Sequence[RawFrames],
    Optional[Sequence[int]],
    Sequence[int],
    Sequence[int],
    Sequence[int],
]:
    """The traceback table, the index of each site's traceback in it (None:
    the table lists the sites' own), the counts, the sizes and the lows of
    *entry*."""
    if isinstance(entry, RawColumns):
        # Lists: their items are read several times (picked, summed,
        # compared), and an array makes an int object at every read.
        return (
            entry.tracebacks,
            entry.traceback_index,
            _as_list(entry.counts),
            _as_list(entry.sizes),
            _as_list(entry.lows),
        )
    sites = entry.sites
    return (
        list(map(_TRACEBACK, sites)),
        None,
        list(map(_COUNT, sites)),
        list(map(_SIZE, sites)),
        list(map(_LOW, sites)),
    )


def _as_list(values: Sequence[int]) -> Sequence[int]:
    """*values* as a list when they are an array (which makes an int object
    at every read)."""
    return values.tolist() if isinstance(values, array) else values


class _Plan:
    """How the sites of an entry fall into groups, for every entry with
    the same sites in the same order (the entries read from one file share
    their traceback table while it does not change).

    A group is named by a small integer, its number.  An entry becomes one
    column of group sizes, indexed by number, with one C-level call
    (`column`); only the sites of groups that have several here are added
    in Python.
    """

    def __init__(
        self,
        table: Sequence[RawFrames],
        index: Optional[Sequence[int]],
        numbers: List[int],
    ) -> None:
        self.table = table
        self.index = index
        #: Each site's group number; -1 for the tracer's own memory.
        self.numbers = numbers
        #: group number -> its first site, in the order of the sites.
        self.firsts: Dict[int, int] = {}
        #: (site, group number) of each site that is not its group's first.
        self.extra: List[Tuple[int, int]] = []
        for site, number in enumerate(numbers):
            if number >= 0 and self.firsts.setdefault(number, site) != site:
                self.extra.append((site, number))
        width = max(self.firsts, default=-1) + 1
        # A group this entry lacks takes the value after the last site: 0.
        picks = [self.firsts.get(number, len(numbers)) for number in range(width)]
        self.gaps = len(self.firsts) < width
        self._pick = operator.itemgetter(*picks) if width > 1 else None
        self._picks = picks
        self._members: Optional[Dict[int, List[int]]] = None

    def matches(
        self, table: Sequence[RawFrames], index: Optional[Sequence[int]]
    ) -> bool:
        """Do the sites of (*table*, *index*) have this plan's tracebacks,
        in this order?"""
        if (index is None) != (self.index is None):
            return False
        # Identical objects compare at C speed; equal ones are as good.
        if table is not self.table and table != self.table:
            return False
        return index is None or index is self.index or index == self.index

    def column(self, values: Sequence[int]) -> Sequence[int]:
        """Per-site *values* summed by group: a sequence indexed by group
        number (0 for the groups that have no site here)."""
        if self.gaps:
            values = list(values)
            values.append(0)
        if self._pick is not None:
            column: Sequence[int] = self._pick(values)
        else:
            column = [values[i] for i in self._picks]
        if self.extra:
            column = list(column)
            for site, number in self.extra:
                column[number] += values[site]
        return column

    def sites_of(self, number: int) -> List[int]:
        """The sites of group *number* here, in order (none if it has none)."""
        if self._members is None:
            self._members = {}
            for site, group in self.extra:
                self._members.setdefault(group, [self.firsts[group]]).append(site)
        members = self._members.get(number)
        if members is not None:
            return members
        first = self.firsts.get(number)
        return [] if first is None else [first]

    def frames_of(self, site: int) -> RawFrames:
        return self.table[site if self.index is None else self.index[site]]


class _Read:
    """What the report keeps of one entry: its sizes and floors by group,
    and its sites' sizes and counts (for each suspect's biggest
    traceback)."""

    __slots__ = ("timestamp", "plan", "sizes", "counts", "empty", "column", "floors")

    def __init__(
        self,
        timestamp: float,
        plan: _Plan,
        sizes: Sequence[int],
        counts: Sequence[int],
        empty: bool,
        column: Sequence[int],
        floors: Sequence[int],
    ) -> None:
        self.timestamp = timestamp
        self.plan = plan
        self.sizes = sizes
        self.counts = counts
        #: Some site has no block left: such sites are left out.
        self.empty = empty
        self.column = column
        #: Each group's floor (its sites' lows summed).
        self.floors = floors


class _Reducer:
    """Reduces the entries of a timeline one by one to group sizes, as
    `pyleakhunt.growth.reduce_snapshot` groups a snapshot (sites with no
    block and the tracer's own memory left out); each group is named by a
    small integer.

    *keys* maps a traceback to its group's number (-1 for the tracer's own
    memory) and *groups* a group key (raw frames) to its number: kept from
    one entry to the next, because a timeline repeats its tracebacks.
    """

    def __init__(self, key_type: str) -> None:
        self.key_type = key_type
        self.keys: Dict[RawFrames, int] = {}
        self.groups: Dict[RawFrames, int] = {}
        self.plan: Optional[_Plan] = None
        #: The entries in the order read.
        self.read: List[_Read] = []

    def add(self, entry: Entry) -> int:
        """Reduce *entry*; return the bytes of all its sites."""
        table, index, counts, sizes, lows = _site_columns(entry)
        plan = self.plan
        if plan is None or not plan.matches(table, index):
            frames = table if index is None else map(table.__getitem__, index)
            plan = self.plan = _Plan(table, index, self._numbers(frames))
        empty = 0 in counts
        kept = sizes
        if empty:
            kept = [size if count else 0 for size, count in zip(sizes, counts)]
        column = plan.column(kept)
        floors = plan.column(lows)  # an empty site's low is 0 too
        self.read.append(
            _Read(entry.timestamp, plan, sizes, counts, empty, column, floors)
        )
        return sum(sizes)

    def _numbers(self, tracebacks: Iterable[RawFrames]) -> List[int]:
        known = self.keys.get
        numbers = []
        for frames in tracebacks:
            number = known(frames)
            if number is None:
                number = self.keys[frames] = self._group_number(frames)
            numbers.append(number)
        return numbers

    def _group_number(self, frames: RawFrames) -> int:
        if any(f[0] in TRACER_FILES for f in frames):
            return -1
        key = raw_group_key(self.key_type, frames)
        return self.groups.setdefault(key, len(self.groups))

    def series(
        self, order: Sequence[int], floors: bool = False
    ) -> List[Tuple[int, ...]]:
        """Each group's sizes (or *floors*) at the entries *order* names,
        indexed by group number: one C-level transposition of the
        columns."""
        columns = [
            self.read[i].floors if floors else self.read[i].column for i in order
        ]
        if len(set(map(len, columns))) == 1:
            return list(zip(*columns))
        return list(itertools.zip_longest(*columns, fillvalue=0))

    def present(self, read: _Read) -> Dict[int, int]:
        """The groups *read* has blocks of, in the order of their first
        site, with their block counts."""
        plan = read.plan
        if not read.empty:
            counts = plan.column(read.counts)
            return {number: counts[number] for number in plan.firsts}
        held: Dict[int, int] = {}
        for number, count in zip(plan.numbers, read.counts):
            if number >= 0 and count:
                held[number] = held.get(number, 0) + count
        return held

    def biggest(self, number: int) -> RawFrames:
        """The traceback of group *number*'s biggest site: the first, in
        the order read, to reach the largest size any of its sites had."""
        best, frames = -1, ()
        for read in self.read:
            for site in read.plan.sites_of(number):
                if read.empty and not read.counts[site]:
                    continue
                if read.sizes[site] > best:
                    best, frames = read.sizes[site], read.plan.frames_of(site)
        return frames


def _snapshot(entry: Entry) -> RawSnapshot:
    return entry.to_snapshot() if isinstance(entry, RawColumns) else entry


def _site_name(traceback: Traceback, user: Any) -> str:
    frames = traceback.raw_frames
    filename, lineno = user(frames) if frames else ("?", 0)
    return "%s:%d" % (filename, lineno)


def timeline_page(
    path: str,
    entries: Iterable[Entry],
    key_type: str = "userline",
    rule: GrowthRule = DEFAULT_RULE,
    progress: Optional[Progress] = None,
    truncated_tail: Optional[Callable[[], bool]] = None,
) -> Page:
    """The report of a timeline whose entries *entries* yields in order
    (`RawSnapshot` objects, or `RawColumns`: cheaper to read, see
    `pyleakhunt.fileformat.iter_timeline`).

    Suspects are grouped by *key_type* (``userline``, as ``pyleakhunt
    suspects`` groups them by default, or ``lineno``...).

    Entries are reduced as they are read (`pyleakhunt.growth.reduce_snapshot`),
    so only the first and the last are kept whole.  *truncated_tail*, called
    after the last entry, says whether the file ended inside an entry.
    """
    reducer = _Reducer(key_type)
    # Reading makes millions of tuples that live until the end (sites,
    # figures): the collector's passes over them find nothing to free and
    # cost a third of the time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _timeline_page(
            path, entries, key_type, rule, progress, truncated_tail, reducer
        )
    finally:
        if collecting:
            gc.enable()


def _timeline_page(
    path: str,
    entries: Iterable[Entry],
    key_type: str,
    rule: GrowthRule,
    progress: Optional[Progress],
    truncated_tail: Optional[Callable[[], bool]],
    reducer: _Reducer,
) -> Page:
    from ..userframe import user_raw_frame

    traced: List[tuple] = []
    rss: List[tuple] = []
    first: Optional[Entry] = None
    last: Optional[Entry] = None
    pid = lost_blocks = 0
    estimated = False
    closing_at: Optional[float] = None  # when a closing sample was taken
    for count, raw in enumerate(entries, 1):
        if progress is not None and progress.reading:
            progress.update(
                "pyleakhunt: report: reading %s: %s"
                % (path, plural(count, "entry", "entries"))
            )
        traced.append((raw.timestamp, reducer.add(raw)))
        estimated = estimated or bool(raw.sample_bytes)
        value = raw.attrs.get(RSS_ATTR) if isinstance(raw.attrs, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            rss.append((raw.timestamp, value))
        if is_closing(raw):
            closing_at = raw.timestamp
        if first is None:
            first = raw
        last = raw
        pid = raw.pid or pid
        lost_blocks = max(lost_blocks, raw.lost_blocks)
    if progress is not None:
        progress.update("pyleakhunt: report: finding suspects")
    read = reducer.read
    order = sorted(range(len(read)), key=lambda i: read[i].timestamp)
    timestamps = [read[i].timestamp for i in order]
    traced = sorted(traced)
    rss.sort()
    # Each group's size at each sample, by group number.
    sizes = reducer.series(order)
    floors = reducer.series(order, floors=True)
    # The groups of the last sample, in the order of their first site (the
    # order `find_suspects` would meet them), with their block counts.
    present = reducer.present(read[order[-1]]) if read else {}
    closing = len(order) >= 2 and timestamps[-1] == closing_at
    if closing:  # the groups the program's end freed whole (find_suspects)
        for number in reducer.present(read[order[-2]]):
            present.setdefault(number, 0)
    # The rule sees group numbers as keys; its suspects then get the
    # Traceback keys every other output shows.
    group_keys = list(reducer.groups)  # in the order of their numbers
    found = suspects_of_series(
        timestamps,
        (
            (number, sizes[number], floors[number], present[number])
            for number in set(present)
        ),
        {},
        rule,
        estimated,
        closing,
    )
    numbers = [suspect.key for suspect in found]
    suspects = [
        dataclasses.replace(
            suspect,
            key=Traceback(group_keys[number]),
            traceback=Traceback(reducer.biggest(number)),
        )
        for suspect, number in zip(found, numbers)
    ]
    start = timestamps[0] if timestamps else 0.0
    duration = timestamps[-1] - start if timestamps else 0.0

    subtitle = ["Timeline %s" % path]
    if timestamps:
        subtitle.append(
            "pid %d, %s over %s from %s%s"
            % (
                pid,
                plural(len(timestamps), "sample"),
                format_duration(duration),
                format_time(start),
                " (estimated)" if estimated else "",
            )
        )
    else:
        subtitle.append("The timeline has no complete entry.")
    page = Page("pyleakhunt report: pid %d" % pid, subtitle)

    def relative(points: Sequence[tuple]) -> List[tuple]:
        return [(t - start, v) for t, v in points]

    def sizes_of(rank: int) -> List[float]:
        return list(sizes[numbers[rank]])

    series = [Series("traced memory", relative(traced), kind="total", floor=True)]
    chart_notes = []
    if rss:
        series.append(Series("RSS", relative(rss), kind="rss", floor=True))
    else:
        chart_notes.append(
            "RSS: not recorded in this timeline (written by a pyleakhunt "
            "that did not record it)."
        )
    times = [t - start for t in timestamps]
    for rank, suspect in enumerate(suspects[:CHART_SUSPECTS]):
        series.append(
            Series(
                _site_name(suspect.traceback, user_raw_frame),
                list(zip(times, sizes_of(rank))),
            )
        )
    if progress is not None:
        progress.update("pyleakhunt: report: drawing")
    page.chart("Memory over time", series, x_kind="time", notes=chart_notes)

    shown = suspects[:TABLE_SUSPECTS]
    watched = len(present)
    if len(timestamps) < rule.min_samples:
        empty = no_suspect_reason(len(timestamps), rule.min_samples).capitalize() + "."
    else:
        empty = (
            "No suspect: none of the %s traced at the end kept growing over "
            "%s (%s)."
            % (
                plural(watched, "call site"),
                plural(len(timestamps), "sample"),
                format_duration(duration),
            )
        )
    suspect_notes = [
        "A suspect grew over the whole timeline, still grew in its second "
        "half, and kept most of what it gained; steadiness is the share of "
        "intervals in which it grew. Click a row for its traceback."
    ]
    if len(suspects) > len(shown):
        suspect_notes.append(
            "The %d fastest-growing of %d suspects are listed."
            % (len(shown), len(suspects))
        )
    suspect_notes += _accuracy(estimated, lost_blocks)
    if truncated_tail is not None and truncated_tail():
        suspect_notes.append(
            "The last entry of the file was cut short (the process was "
            "probably killed while writing it): it is left out."
        )
    page.suspects(
        "Leak suspects",
        suspect_rows(shown, {s.key: sizes_of(rank) for rank, s in enumerate(shown)}),
        empty=empty,
        notes=suspect_notes,
    )
    if last is not None and first is not None:
        first, last = _snapshot(first), _snapshot(last)
        page.flame_graph(
            "Live memory at the last sample (%s)" % format_time(last.timestamp),
            records_of(Snapshot._from_raw(last)),
            notes=[
                "Width is bytes live at the last sample, by traceback; the "
                "outermost call is at the top. Click a frame to zoom in, "
                "the top frame to come back."
            ],
        )
        old, new = Snapshot._from_raw(first), Snapshot._from_raw(last)
        page.flame_graph(
            "Growth from the first sample to the last (%s)" % format_duration(duration),
            records_of(stacks.growth(old, new)),
            notes=[
                "Width is how much each traceback's live memory grew "
                "between the first and the last sample (tracebacks that "
                "shrank are left out)."
            ],
            empty="Nothing grew between the first and the last sample.",
        )
    if progress is not None:
        progress.done()
    return page


def _describe(kind: str, path: str, snapshot: Snapshot) -> str:
    total = sum(site.size for site in snapshot.raw.sites)
    return "%s %s: pid %d at %s, %s traced%s" % (
        kind,
        path,
        snapshot.pid if hasattr(snapshot, "pid") else snapshot.raw.pid,
        format_time(snapshot.raw.timestamp),
        format_size(total),
        " (estimated)" if snapshot.raw.sample_bytes else "",
    )


def snapshot_page(path: str, snapshot: Snapshot) -> Page:
    """The report of one snapshot: its live memory as a flame graph."""
    raw = snapshot.raw
    page = Page(
        "pyleakhunt report: pid %d" % raw.pid, [_describe("Snapshot", path, snapshot)]
    )
    page.flame_graph(
        "Live memory",
        records_of(snapshot),
        notes=[
            "Width is bytes live, by traceback; the outermost call is at "
            "the top. Click a frame to zoom in, the top frame to come back."
        ]
        + _accuracy(bool(raw.sample_bytes), raw.lost_blocks),
    )
    return page


def diff_page(old_path: str, old: Snapshot, new_path: str, new: Snapshot) -> Page:
    """The report of two snapshots: what grew between them, and what the
    newer one holds."""
    page = Page(
        "pyleakhunt report: pid %d" % new.raw.pid,
        [_describe("Old", old_path, old), _describe("New", new_path, new)],
    )
    notes = _accuracy(
        bool(old.raw.sample_bytes or new.raw.sample_bytes),
        max(old.raw.lost_blocks, new.raw.lost_blocks),
    )
    if old.raw.pid != new.raw.pid:
        notes.append(
            "The snapshots come from different processes (pids %d and %d)."
            % (old.raw.pid, new.raw.pid)
        )
    span = new.raw.timestamp - old.raw.timestamp
    page.flame_graph(
        "Growth from old to new"
        + (" (%s)" % format_duration(span) if span > 0 else ""),
        records_of(stacks.growth(old, new)),
        notes=[
            "Width is how much each traceback's live memory grew (tracebacks "
            "that shrank are left out)."
        ]
        + notes,
        empty="Nothing grew between the two snapshots.",
    )
    page.flame_graph("Live memory in new", records_of(new))
    return page
