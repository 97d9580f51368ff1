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
import operator
import sys
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .._raw import RawFrames, RawSnapshot
from ..growth import DEFAULT_RULE, TRACER_FILES, GrowthRule, Sample, find_suspects
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
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.started = clock()
        self.shown = False
        self._last = 0.0
        self._width = 0
        try:
            self.enabled = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self.enabled = False

    def update(self, text: str) -> None:
        """Show *text* (at most 5 times a second, after `delay`)."""
        now = self.clock()
        if not self.enabled or now - self.started < self.delay:
            return
        if self.shown and now - self._last < 0.2:
            return
        self._last = now
        self._show(text)

    def done(self, text: str = "done") -> None:
        """End the progress line, if one was shown."""
        if self.shown:
            self._show("pyleakhunt: report: " + text, end="\n")

    def _show(self, text: str, end: str = "") -> None:
        self.shown = True
        self.stream.write("\r" + text.ljust(self._width) + end)
        self.stream.flush()
        self._width = len(text)


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


#: A site's traceback, count and size.
_FIGURES = operator.itemgetter(1, 3, 4)
_SIZE = operator.itemgetter(4)
#: The key, in `_reduce`'s traceback cache, of its cache by identity.
_BY_ID: Any = ("by id",)
_BY_ID_MAX = 1 << 20


def _reduce(
    raw: RawSnapshot,
    key_type: str,
    keys: Dict[RawFrames, int],
    groups: Dict[RawFrames, int],
    biggest: List[Tuple[int, RawFrames]],
) -> Sample:
    """*raw* grouped by *key_type*, as `pyleakhunt.growth.reduce_snapshot`
    groups it (empty sites and the tracer's own memory left out), each
    group named by a small integer.

    The caches are kept from one entry to the next, because a timeline
    repeats its tracebacks: *keys* maps a traceback to its group's number
    (-1 for the tracer's own memory), *groups* a group key (raw frames) to
    its number, and *biggest* gets each group's biggest traceback.  With
    integers as keys, the growth rule's two million lookups (200 samples of
    10,000 sites) cost less than reading the file; Traceback keys cost
    several times more.
    """
    figures: Dict[int, Tuple[int, int]] = {}
    known = keys.get
    # The entries read from one file share their traceback objects (see
    # `pyleakhunt.fileformat`): *by_id* finds a traceback's group by its
    # identity, without hashing its frames.  It holds the traceback, so the
    # id cannot be reused while it is there.
    by_id = keys.setdefault(_BY_ID, {})  # type: ignore[call-overload]
    if len(by_id) > _BY_ID_MAX:  # entries that share nothing
        by_id.clear()
    seen = by_id.get
    for frames, count, size in map(_FIGURES, raw.sites):
        if count == 0:
            continue
        held_id = seen(id(frames))
        if held_id is not None and held_id[0] is frames:
            key = held_id[1]
        else:
            key = known(frames)
            if key is None:
                key = keys[frames] = _group_number(frames, key_type, groups, biggest)
            by_id[id(frames)] = (frames, key)
        if key < 0:
            continue
        held = figures.get(key)
        figures[key] = (
            (size, count) if held is None else (held[0] + size, held[1] + count)
        )
        if size > biggest[key][0]:
            biggest[key] = (size, frames)
    return Sample(raw.timestamp, figures, bool(raw.sample_bytes))  # type: ignore[arg-type]


def _group_number(
    frames: RawFrames,
    key_type: str,
    groups: Dict[RawFrames, int],
    biggest: List[Tuple[int, RawFrames]],
) -> int:
    if any(f[0] in TRACER_FILES for f in frames):
        return -1
    number = groups.setdefault(raw_group_key(key_type, frames), len(groups))
    if number == len(biggest):
        biggest.append((-1, ()))
    return number


_TRACEBACK = operator.itemgetter(1)
_COUNT = operator.itemgetter(3)


class _Plan:
    """How to reduce entries whose sites have the same tracebacks, in the
    same order, as the entry the plan was made for: which sites count
    (*valid*: not the tracer's own memory), the group of each, and a
    running maximum of each valid site's size (for `biggest`)."""

    def __init__(self, tracebacks: List[RawFrames], numbers: List[int]) -> None:
        self.tracebacks = tracebacks
        valid = [i for i, n in enumerate(numbers) if n >= 0]
        self.take = operator.itemgetter(*valid) if len(valid) > 1 else None
        self.valid = valid
        self.numbers = [numbers[i] for i in valid]
        firsts: Dict[int, int] = {}
        for j, number in enumerate(self.numbers):
            firsts.setdefault(number, j)
        #: Positions (among the valid sites) of each group's first site,
        #: and the others, added one by one.
        self.first = list(firsts.values())
        self.first_numbers = list(firsts)
        self.take_first = (
            operator.itemgetter(*self.first) if len(self.first) > 1 else None
        )
        self.extra = [
            j for j in range(len(self.numbers)) if firsts[self.numbers[j]] != j
        ]
        #: Sites whose group has several here: `_Reducer.reduce` compares
        #: them entry by entry, for `biggest` to settle ties as `_reduce`
        #: does (the first site to reach the maximum); a group of one site
        #: has one traceback, so only its running maximum is kept.
        self.shared = {self.numbers[j] for j in self.extra}
        self.multi = [(j, n) for j, n in enumerate(self.numbers) if n in self.shared]
        self.maxima: Optional[List[int]] = None

    def fold(self, biggest: List[Tuple[int, RawFrames]]) -> None:
        """Move the running maxima into *biggest* (call when the plan ends)."""
        if self.maxima is None:
            return
        for j, size in enumerate(self.maxima):
            number = self.numbers[j]
            if size > biggest[number][0] and number not in self.shared:
                biggest[number] = (size, self.tracebacks[self.valid[j]])
        self.maxima = None


class _Reducer:
    """Reduces the entries of a timeline one by one (see `_reduce`).

    Consecutive entries read from one file usually list the very same
    traceback objects in the same order (`pyleakhunt.fileformat` shares
    them): then one `_Plan` reduces each entry with C-level operations on
    its columns instead of a Python loop over its sites.  Any other entry
    (a site with no block left, or different tracebacks) goes through
    `_reduce`.
    """

    def __init__(self, key_type: str) -> None:
        self.key_type = key_type
        self.keys: Dict[RawFrames, int] = {}
        self.groups: Dict[RawFrames, int] = {}
        self.biggest: List[Tuple[int, RawFrames]] = []
        self.plan: Optional[_Plan] = None

    def reduce(self, raw: RawSnapshot) -> Sample:
        sites = raw.sites
        tracebacks = list(map(_TRACEBACK, sites))
        counts = list(map(_COUNT, sites))
        plan = self.plan
        if plan is not None and not (
            len(tracebacks) == len(plan.tracebacks)
            and all(map(operator.is_, tracebacks, plan.tracebacks))
        ):
            plan.fold(self.biggest)
            plan = self.plan = None
        if 0 in counts or len(sites) < 2:
            if plan is not None:
                plan.fold(self.biggest)
            return _reduce(raw, self.key_type, self.keys, self.groups, self.biggest)
        if plan is None:
            numbers = [self._number(frames) for frames in tracebacks]
            plan = self.plan = _Plan(tracebacks, numbers)
        if plan.take is None or plan.take_first is None:
            plan.fold(self.biggest)
            self.plan = None
            return _reduce(raw, self.key_type, self.keys, self.groups, self.biggest)
        sizes = plan.take(list(map(_SIZE, sites)))
        counts = plan.take(counts)
        figures = dict(
            zip(
                plan.first_numbers,
                zip(plan.take_first(sizes), plan.take_first(counts)),
            )
        )
        for j in plan.extra:
            number = plan.numbers[j]
            held = figures[number]
            figures[number] = (held[0] + sizes[j], held[1] + counts[j])
        biggest = self.biggest
        for j, number in plan.multi:
            if sizes[j] > biggest[number][0]:
                biggest[number] = (sizes[j], plan.tracebacks[plan.valid[j]])
        plan.maxima = (
            list(sizes) if plan.maxima is None else list(map(max, plan.maxima, sizes))
        )
        return Sample(raw.timestamp, figures, bool(raw.sample_bytes))  # type: ignore[arg-type]

    def _number(self, frames: RawFrames) -> int:
        number = self.keys.get(frames)
        if number is None:
            number = self.keys[frames] = _group_number(
                frames, self.key_type, self.groups, self.biggest
            )
        return number

    def finish(self) -> None:
        """Complete `biggest` (call once, after the last entry)."""
        if self.plan is not None:
            self.plan.fold(self.biggest)
            self.plan = None


def _traced_total(raw: RawSnapshot) -> int:
    return sum(map(_SIZE, raw.sites))


def _site_name(traceback: Traceback, user: Any) -> str:
    frames = tuple((f.filename, f.lineno) for f in reversed(traceback))
    filename, lineno = user(frames) if frames else ("?", 0)
    return "%s:%d" % (filename, lineno)


def timeline_page(
    path: str,
    entries: Iterable[RawSnapshot],
    key_type: str = "userline",
    rule: GrowthRule = DEFAULT_RULE,
    progress: Optional[Progress] = None,
    truncated_tail: Optional[Callable[[], bool]] = None,
) -> Page:
    """The report of a timeline whose entries *entries* yields in order.

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
    entries: Iterable[RawSnapshot],
    key_type: str,
    rule: GrowthRule,
    progress: Optional[Progress],
    truncated_tail: Optional[Callable[[], bool]],
    reducer: _Reducer,
) -> Page:
    from ..userframe import user_raw_frame

    samples: List[Sample] = []
    traced: List[tuple] = []
    rss: List[tuple] = []
    first: Optional[RawSnapshot] = None
    last: Optional[RawSnapshot] = None
    pid = lost_blocks = 0
    for count, raw in enumerate(entries, 1):
        if progress is not None and progress.reading:
            progress.update(
                "pyleakhunt: report: reading %s: %s"
                % (path, plural(count, "entry", "entries"))
            )
        samples.append(reducer.reduce(raw))
        traced.append((raw.timestamp, _traced_total(raw)))
        value = raw.attrs.get(RSS_ATTR) if isinstance(raw.attrs, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            rss.append((raw.timestamp, value))
        if first is None:
            first = raw
        last = raw
        pid = raw.pid or pid
        lost_blocks = max(lost_blocks, raw.lost_blocks)
    reducer.finish()
    groups, biggest = reducer.groups, reducer.biggest
    if progress is not None:
        progress.update("pyleakhunt: report: finding suspects")
    order = sorted(range(len(samples)), key=lambda i: samples[i].timestamp)
    samples = [samples[i] for i in order]
    traced = sorted(traced)
    rss.sort()
    # The rule sees group numbers as keys; its suspects then get the
    # Traceback keys every other output shows.
    group_keys = list(groups)  # in the order of their numbers
    found = find_suspects(samples, {}, rule)
    numbers = [suspect.key for suspect in found]
    suspects = [
        dataclasses.replace(
            suspect,
            key=Traceback(group_keys[number]),
            traceback=Traceback(biggest[number][1]),
        )
        for suspect, number in zip(found, numbers)
    ]
    start = samples[0].timestamp if samples else 0.0
    duration = samples[-1].timestamp - start if samples else 0.0
    estimated = any(s.estimated for s in samples)

    subtitle = ["Timeline %s" % path]
    if samples:
        subtitle.append(
            "pid %d, %s over %s from %s%s"
            % (
                pid,
                plural(len(samples), "sample"),
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
        number = numbers[rank]
        return [s.figures.get(number, (0, 0))[0] for s in samples]  # type: ignore[call-overload]

    series = [Series("traced memory", relative(traced), kind="total", floor=True)]
    chart_notes = []
    if rss:
        series.append(Series("RSS", relative(rss), kind="rss", floor=True))
    else:
        chart_notes.append(
            "RSS: not recorded in this timeline (written by a pyleakhunt "
            "that did not record it)."
        )
    times = [s.timestamp - start for s in samples]
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
    watched = len(samples[-1].figures) if samples else 0
    if len(samples) < rule.min_samples:
        empty = no_suspect_reason(len(samples), rule.min_samples).capitalize() + "."
    else:
        empty = (
            "No suspect: none of the %s traced at the end kept growing over "
            "%s (%s)."
            % (
                plural(watched, "call site"),
                plural(len(samples), "sample"),
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
