"""Snapshots and the value classes of tracemalloc's API.

`Frame`, `Traceback`, `Trace`, `Statistic`, `StatisticDiff`, `Filter` and
`DomainFilter` behave exactly as their tracemalloc namesakes: same ordering,
same ``str()`` and ``repr()``, same errors.

A `Snapshot` holds *sites*: one record per (domain, traceback) with its live
block count and size (see `pyleakhunt._raw`).  Grouping, filtering and
comparing work on sites, so their cost follows the number of distinct call
sites, not the number of live blocks.  A *full* snapshot also keeps one
record per block, which backs `Snapshot.traces`; an *aggregated* snapshot
does not, and is much cheaper to take.  Both give identical statistics.
"""

from __future__ import annotations

import fnmatch
import functools
import heapq
import linecache
import operator
import os.path
from array import array
from collections.abc import Iterable, Sequence
from functools import total_ordering
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Optional,
    Tuple,
    TypeVar,
    Union,
)

from . import _core
from ._raw import RawFrames, RawSite, RawSnapshot
from .units import format_size
from .userframe import user_raw_frame

__all__ = [
    "AggregatedSnapshotError",
    "DomainFilter",
    "Filter",
    "Frame",
    "Snapshot",
    "Statistic",
    "StatisticDiff",
    "Trace",
    "Traceback",
    "format_size",
]

#: A trace as tracemalloc's ``_get_traces()`` returns it:
#: ``(domain, size, frames, total_nframe)``.
RawTrace = Tuple[int, int, RawFrames, Optional[int]]

#: tracemalloc's three key types, and ``userline``: the most recent frame in
#: the user's code (`pyleakhunt.userframe`), so that what a library
#: allocates for a line of the program is counted under that line.
KEY_TYPES = ("traceback", "filename", "lineno", "userline")

_F = TypeVar("_F", bound=Callable[..., Any])


def untraced(func: _F) -> _F:
    """Run *func* without recording its allocations in this thread.

    The tracer's own analysis is not traced: it would slow the analysis
    down and show up in what it reports (docs/design.md).  Nor does what
    it frees stay in CPython's free lists, where the program's next
    objects would be made in it and counted at the program's lines
    (`_core.trim_free_lists`).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        was_paused = _core.pause_thread(True)
        lengths = () if was_paused else _core.free_list_lengths()
        try:
            return func(*args, **kwargs)
        finally:
            del args, kwargs  # freed before the lists are trimmed
            _core.trim_free_lists(lengths)
            _core.pause_thread(was_paused)

    return wrapper  # type: ignore[return-value]


class AggregatedSnapshotError(RuntimeError):
    """Raised when per-block traces are asked of an aggregated snapshot."""


# --------------------------------------------------------------------------
# Frames and tracebacks


@total_ordering
class Frame:
    """One frame of a traceback: a filename and a line number."""

    __slots__ = ("_frame",)

    def __init__(self, frame: Tuple[str, int]) -> None:
        self._frame = frame

    @property
    def filename(self) -> str:
        return self._frame[0]

    @property
    def lineno(self) -> int:
        return self._frame[1]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return self._frame == other._frame

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return self._frame < other._frame

    def __hash__(self) -> int:
        return hash(self._frame)

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno}"

    def __repr__(self) -> str:
        return f"<Frame filename={self.filename!r} lineno={self.lineno!r}>"


@total_ordering
class Traceback(Sequence):
    """Frames of an allocation, from the oldest call to the most recent.

    The constructor takes frames the way the tracer reports them, most
    recent first, and reverses them.
    """

    __slots__ = ("_frames", "_total_nframe")

    def __init__(self, frames: RawFrames, total_nframe: Optional[int] = None) -> None:
        self._frames = tuple(reversed(frames))
        self._total_nframe = total_nframe

    @property
    def total_nframe(self) -> Optional[int]:
        """Depth of the stack before it was cut to the traceback limit."""
        return self._total_nframe

    @property
    def raw_frames(self) -> RawFrames:
        """The frames as the tracer reports them (and the constructor takes
        them): ``(filename, lineno)`` tuples, the most recent call first."""
        return self._frames[::-1]

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return tuple(Frame(frame) for frame in self._frames[index])
        return Frame(self._frames[index])

    def __contains__(self, frame: object) -> bool:
        return isinstance(frame, Frame) and frame._frame in self._frames

    def __hash__(self) -> int:
        return hash(self._frames)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Traceback):
            return NotImplemented
        return self._frames == other._frames

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Traceback):
            return NotImplemented
        return self._frames < other._frames

    def __str__(self) -> str:
        return str(self[0])

    def __repr__(self) -> str:
        text = f"<Traceback {tuple(self)}"
        if self._total_nframe is None:
            return text + ">"
        return text + f" total_nframe={self._total_nframe}>"

    def format(
        self, limit: Optional[int] = None, most_recent_first: bool = False
    ) -> List[str]:
        """Lines like a Python traceback's, with the source line of each frame.

        A positive *limit* keeps the most recent frames, a negative one the
        oldest.
        """
        if limit is None:
            frames: Sequence[Frame] = self
        elif limit > 0:
            frames = self[-limit:]
        else:
            frames = self[:limit]
        if most_recent_first:
            frames = tuple(reversed(frames))
        lines = []
        for frame in frames:
            lines.append(f'  File "{frame.filename}", line {frame.lineno}')
            source = linecache.getline(frame.filename, frame.lineno).strip()
            if source:
                lines.append(f"    {source}")
        return lines


# --------------------------------------------------------------------------
# Traces


class Trace:
    """One live memory block: its domain, size and traceback."""

    __slots__ = ("_trace",)

    def __init__(self, trace: RawTrace) -> None:
        self._trace = trace

    @property
    def domain(self) -> int:
        return self._trace[0]

    @property
    def size(self) -> int:
        return self._trace[1]

    @property
    def traceback(self) -> Traceback:
        return Traceback(*self._trace[2:])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return self._trace == other._trace

    def __hash__(self) -> int:
        return hash(self._trace)

    def __str__(self) -> str:
        return f"{self.traceback}: {format_size(self.size, False)}"

    def __repr__(self) -> str:
        return "<Trace domain=%s size=%s, traceback=%r>" % (
            self.domain,
            format_size(self.size, False),
            self.traceback,
        )


class RawTraces(Sequence):
    """Per-block traces of a full snapshot, as ``(domain, size, frames,
    total_nframe)`` tuples built on demand from compact arrays.

    It compares equal to any sequence of the same tuples, such as the list
    that tracemalloc's ``_get_traces()`` returns.
    """

    __slots__ = ("_sites", "_block_sites", "_block_sizes", "snapshot")

    def __init__(self, sites: List[RawSite], block_sites: array, block_sizes: array):
        self._sites = sites
        self._block_sites = block_sites
        self._block_sizes = block_sizes

    def __len__(self) -> int:
        return len(self._block_sizes)

    def _trace(self, index: int) -> RawTrace:
        site = self._sites[self._block_sites[index]]
        return (site.domain, self._block_sizes[index], site.frames, site.total_nframe)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self._trace(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("trace index out of range")
        return self._trace(index)

    def __iter__(self) -> Iterator[RawTrace]:
        sites = [(site.domain, site.frames, site.total_nframe) for site in self._sites]
        for site_index, size in zip(self._block_sites, self._block_sizes):
            domain, frames, total_nframe = sites[site_index]
            yield (domain, size, frames, total_nframe)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, (str, bytes)):
            return NotImplemented
        return len(self) == len(other) and all(
            mine == theirs for mine, theirs in zip(self, other)
        )

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> List[RawTrace]:
        return list(self)

    def __repr__(self) -> str:
        return f"<RawTraces len={len(self)}>"


class _Traces(Sequence):
    """``Snapshot.traces``: a sequence of `Trace` objects."""

    def __init__(self, traces: Sequence[RawTrace]) -> None:
        self._traces = traces

    def __len__(self) -> int:
        return len(self._traces)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return tuple(Trace(trace) for trace in self._traces[index])
        return Trace(self._traces[index])

    def __contains__(self, trace: object) -> bool:
        return isinstance(trace, Trace) and trace._trace in self._traces

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Traces):
            return NotImplemented
        return self._traces == other._traces

    def __repr__(self) -> str:
        return f"<Traces len={len(self)}>"


# --------------------------------------------------------------------------
# Statistics


class Statistic:
    """Blocks and bytes grouped under one traceback."""

    __slots__ = ("traceback", "size", "count")

    def __init__(self, traceback: Traceback, size: int, count: int) -> None:
        self.traceback = traceback
        self.size = size
        self.count = count

    def __hash__(self) -> int:
        return hash((self.traceback, self.size, self.count))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Statistic):
            return NotImplemented
        return (self.traceback, self.size, self.count) == (
            other.traceback,
            other.size,
            other.count,
        )

    def __str__(self) -> str:
        text = "%s: size=%s, count=%i" % (
            self.traceback,
            format_size(self.size, False),
            self.count,
        )
        if self.count:
            text += ", average=%s" % format_size(self.size / self.count, False)
        return text

    def __repr__(self) -> str:
        return "<Statistic traceback=%r size=%i count=%i>" % (
            self.traceback,
            self.size,
            self.count,
        )

    def _sort_key(self) -> Tuple[Any, ...]:
        return (self.size, self.count, self.traceback)


class StatisticDiff:
    """The change of a `Statistic` between an old and a new snapshot."""

    __slots__ = ("traceback", "size", "size_diff", "count", "count_diff")

    def __init__(
        self,
        traceback: Traceback,
        size: int,
        size_diff: int,
        count: int,
        count_diff: int,
    ) -> None:
        self.traceback = traceback
        self.size = size
        self.size_diff = size_diff
        self.count = count
        self.count_diff = count_diff

    def _fields(self) -> Tuple[Any, ...]:
        return (self.traceback, self.size, self.size_diff, self.count, self.count_diff)

    def __hash__(self) -> int:
        return hash(self._fields())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StatisticDiff):
            return NotImplemented
        return self._fields() == other._fields()

    def __str__(self) -> str:
        text = "%s: size=%s (%s), count=%i (%+i)" % (
            self.traceback,
            format_size(self.size, False),
            format_size(self.size_diff, True),
            self.count,
            self.count_diff,
        )
        if self.count:
            text += ", average=%s" % format_size(self.size / self.count, False)
        return text

    def __repr__(self) -> str:
        return "<StatisticDiff traceback=%r size=%i (%+i) count=%i (%+i)>" % (
            self.traceback,
            self.size,
            self.size_diff,
            self.count,
            self.count_diff,
        )

    def _sort_key(self) -> Tuple[Any, ...]:
        return (
            abs(self.size_diff),
            self.size,
            abs(self.count_diff),
            self.count,
            self.traceback,
        )

    def _growth_key(self) -> Tuple[Any, ...]:
        return (self.size_diff, self.count_diff, self.size, self.traceback)


#: A diff row: (frames, size, size_diff, count, count_diff).
_DiffRow = Tuple[RawFrames, int, int, int, int]

# A group's (size, count).  A tuple, not a list: the cyclic collector
# stops tracking a tuple of ints at its first pass, so that 100,000 groups
# do not make it walk them again at each full collection while more are
# built (a list per group cost 3.12 a third of the grouping's time).
Figures = Tuple[int, int]


def _raw_diffs(
    old: Dict[RawFrames, Figures], new: Dict[RawFrames, Figures]
) -> List[_DiffRow]:
    rows = []
    for key, (size, count) in new.items():
        old_size, old_count = old.get(key, (0, 0))
        rows.append((key, size, size - old_size, count, count - old_count))
    for key, (size, count) in old.items():
        if key not in new:
            rows.append((key, 0, -size, 0, -count))
    return rows


_REVERSED = operator.itemgetter(slice(None, None, -1))

# heapq's max-heap, in C: public from 3.14, private but there on 3.10-3.13.
_heapify_max = getattr(heapq, "heapify_max", None) or heapq._heapify_max
_heappop_max = getattr(heapq, "heappop_max", None) or heapq._heappop_max


def _largest_groups(
    groups: Dict[Any, Figures], n: int, order: Optional[Callable[[Any], Any]]
) -> List[Tuple[Any, Figures]]:
    """The *n* biggest ``(key, (size, count))`` items of *groups*, in the
    order of ``statistics()``: by size, count, then the key (through
    *order*), the biggest first.

    Only the figures are compared at first: the keys, which are unique,
    need comparing only among the groups tied with the n-th, and over
    100,000 sites of one size that is nearly all of them.  Ranking every
    group as a (size, count, key) tuple took 100 ms there (3.11).
    """
    if n <= 0 or not groups:
        return []
    floor = heapq.nlargest(n, groups.values())[-1]
    above = [(key, figures) for key, figures in groups.items() if figures > floor]
    above.sort(
        key=lambda item: (item[1], item[0] if order is None else order(item[0])),
        reverse=True,
    )
    tied = [key for key, figures in groups.items() if figures == floor]
    if order is not None:
        tied = [order(key) for key in tied]
    tied = _largest_keys(tied, n - len(above))
    if order is not None:
        tied = [order(key) for key in tied]  # its own inverse: a reversal
    return above + [(key, floor) for key in tied]


def _largest_keys(keys: List[Any], m: int) -> List[Any]:
    """The *m* largest of *keys* (a list it may reorder), largest first.

    A heap built in C, in one pass: heapq.nlargest loops in Python, and
    over keys in ascending order (sites in the order their lines were
    first run) replaced its smallest for every one, 54 ms for 100,000.
    """
    if m >= len(keys) // 8:
        keys.sort(reverse=True)
        return keys[:m]
    _heapify_max(keys)
    return [_heappop_max(keys) for _ in range(m)]


def _statistic_order(item: Tuple[RawFrames, Figures]) -> Tuple[Any, ...]:
    frames, (size, count) = item
    return (size, count, frames[::-1])


def _change_order(row: _DiffRow) -> Tuple[Any, ...]:
    frames, size, size_diff, count, count_diff = row
    return (abs(size_diff), size, abs(count_diff), count, frames[::-1])


def _growth_order(row: _DiffRow) -> Tuple[Any, ...]:
    frames, size, size_diff, count, count_diff = row
    return (size_diff, count_diff, size, frames[::-1])


def _statistics(items: Iterable[Tuple[RawFrames, Figures]]) -> List[Statistic]:
    return [Statistic(Traceback(key), size, count) for key, (size, count) in items]


def _statistic_diffs(rows: Iterable[_DiffRow]) -> List[StatisticDiff]:
    return [StatisticDiff(Traceback(key), *figures) for key, *figures in rows]


# --------------------------------------------------------------------------
# Filters


def _normalize_filename(filename: str) -> str:
    filename = os.path.normcase(filename)
    if filename.endswith(".pyc"):
        filename = filename[:-1]
    return filename


class BaseFilter:
    """Base class of snapshot filters."""

    def __init__(self, inclusive: bool) -> None:
        self.inclusive = inclusive

    def _match(self, trace: RawTrace) -> bool:
        raise NotImplementedError


class Filter(BaseFilter):
    """Keep (or drop) traces whose traceback matches a filename pattern."""

    def __init__(
        self,
        inclusive: bool,
        filename_pattern: str,
        lineno: Optional[int] = None,
        all_frames: bool = False,
        domain: Optional[int] = None,
    ) -> None:
        super().__init__(inclusive)
        self._filename_pattern = _normalize_filename(filename_pattern)
        self.lineno = lineno
        self.all_frames = all_frames
        self.domain = domain

    @property
    def filename_pattern(self) -> str:
        return self._filename_pattern

    def _match_frame_impl(self, filename: str, lineno: int) -> bool:
        if not fnmatch.fnmatch(_normalize_filename(filename), self._filename_pattern):
            return False
        return self.lineno is None or lineno == self.lineno

    def _match_frame(self, filename: str, lineno: int) -> bool:
        return self._match_frame_impl(filename, lineno) ^ (not self.inclusive)

    def _match_traceback(self, frames: RawFrames) -> bool:
        if self.all_frames:
            if any(self._match_frame_impl(name, line) for name, line in frames):
                return self.inclusive
            return not self.inclusive
        filename, lineno = frames[0]
        return self._match_frame(filename, lineno)

    def _match(self, trace: RawTrace) -> bool:
        domain, _size, frames, _total = trace
        result = self._match_traceback(frames)
        if self.domain is None:
            return result
        if self.inclusive:
            return result and domain == self.domain
        return result or domain != self.domain


class DomainFilter(BaseFilter):
    """Keep (or drop) traces of one address space (domain)."""

    def __init__(self, inclusive: bool, domain: int) -> None:
        super().__init__(inclusive)
        self._domain = domain

    @property
    def domain(self) -> int:
        return self._domain

    def _match(self, trace: RawTrace) -> bool:
        return (trace[0] == self._domain) ^ (not self.inclusive)


def _passes(
    include: List[BaseFilter], exclude: List[BaseFilter], trace: RawTrace
) -> bool:
    if include and not any(f._match(trace) for f in include):
        return False
    return not any(not f._match(trace) for f in exclude)


# --------------------------------------------------------------------------
# Snapshots


def _sites_from_traces(
    traces: Iterable[RawTrace],
) -> Tuple[List[RawSite], array, array]:
    """Group tracemalloc-style trace tuples into sites plus block arrays."""
    index: Dict[Tuple[int, RawFrames, Optional[int]], int] = {}
    counts: List[int] = []
    sizes: List[int] = []
    block_sites = array("I")
    block_sizes = array("Q")
    for domain, size, frames, total_nframe in traces:
        key = (domain, frames, total_nframe)
        position = index.get(key)
        if position is None:
            position = index[key] = len(counts)
            counts.append(0)
            sizes.append(0)
        counts[position] += 1
        sizes[position] += size
        block_sites.append(position)
        block_sizes.append(size)
    sites = [
        RawSite(domain, frames, total, counts[i], sizes[i], sizes[i])
        for (domain, frames, total), i in index.items()
    ]
    return sites, block_sites, block_sizes


#: Attributes of a Snapshot that are its own state, not user attributes.
_OWN_ATTRIBUTES = frozenset({"_raw", "_traces_view", "traceback_limit"})


class Snapshot:
    """Live memory of a traced program at one moment, grouped by call site.

    ``Snapshot(traces, traceback_limit)`` builds one from tracemalloc-style
    trace tuples, as tracemalloc does.  `pyleakhunt.take_snapshot()` makes
    them from the running tracer.
    """

    def __init__(self, traces: Sequence[RawTrace], traceback_limit: int) -> None:
        if isinstance(traces, RawTraces):
            raw = RawSnapshot(
                traceback_limit,
                traces._sites,
                traces._block_sites,
                traces._block_sizes,
            )
        else:
            sites, block_sites, block_sizes = _sites_from_traces(traces)
            raw = RawSnapshot(traceback_limit, sites, block_sites, block_sizes)
        self._init_raw(raw, traces)

    def _init_raw(self, raw: RawSnapshot, traces: Any = None) -> None:
        self._raw = raw
        self.traceback_limit = raw.traceback_limit
        self._traces_view = traces

    @classmethod
    def _from_raw(cls, raw: RawSnapshot) -> Snapshot:
        snapshot = cls.__new__(cls)
        snapshot._init_raw(raw)
        for name, value in raw.attrs.items():
            if name not in _OWN_ATTRIBUTES:
                setattr(snapshot, name, value)
        return snapshot

    # -- what the snapshot holds -------------------------------------------

    @property
    def is_aggregated(self) -> bool:
        """True when the snapshot has per-site totals but no per-block traces."""
        return not self._raw.is_full

    @property
    def is_estimated(self) -> bool:
        """True when sizes and counts are estimates from sampled tracing."""
        return self._raw.sample_bytes > 0

    @property
    def sample_bytes(self) -> int:
        """Mean sampling gap in bytes, 0 for exact tracing."""
        return self._raw.sample_bytes

    @property
    def lost_blocks(self) -> int:
        """Blocks the tracer failed to record before this snapshot (0 if none)."""
        return self._raw.lost_blocks

    @property
    def pid(self) -> int:
        return self._raw.pid

    @property
    def timestamp(self) -> float:
        """When the snapshot was taken, in seconds since the epoch."""
        return self._raw.timestamp

    @property
    def sites(self) -> List[RawSite]:
        """Live aggregates per (domain, traceback, tag) site."""
        return self._raw.sites

    @property
    def raw(self) -> RawSnapshot:
        """The underlying plain data (shared, do not modify)."""
        return self._raw

    @property
    def traces(self) -> _Traces:
        """Per-block traces, as tracemalloc's ``Snapshot.traces``."""
        if self._raw.block_sites is None:
            raise AggregatedSnapshotError(
                "this snapshot is aggregated: it holds per-site totals, not "
                "per-block traces; use take_snapshot() (traces=True) to get "
                "traces, or statistics(), top() and diff() on this one"
            )
        if self._traces_view is None:
            self._traces_view = RawTraces(
                self._raw.sites, self._raw.block_sites, self._raw.block_sizes
            )
        return _Traces(self._traces_view)

    # -- files --------------------------------------------------------------

    def dump(self, filename: Union[str, os.PathLike]) -> None:
        """Write the snapshot to *filename* in pyleakhunt's binary format."""
        from .fileformat import write_snapshot

        attrs = {
            name: value
            for name, value in vars(self).items()
            if name not in _OWN_ATTRIBUTES
        }
        raw = self._raw
        if attrs != raw.attrs:
            raw = RawSnapshot(**{**vars(raw), "attrs": attrs})
        write_snapshot(filename, raw)

    @staticmethod
    def load(filename: Union[str, os.PathLike]) -> Snapshot:
        """Read a snapshot written by `dump`.  Never unpickles anything."""
        from .fileformat import read_snapshot

        return Snapshot._from_raw(read_snapshot(filename))

    def to_pprof(self, path: Union[str, os.PathLike]) -> None:
        """Write the live memory as a gzipped pprof profile (``go tool
        pprof``), one sample per call site; see `pyleakhunt.export`."""
        from .export import write_pprof

        write_pprof(self, path)

    def to_folded(self, path: Union[str, os.PathLike], value: str = "bytes") -> None:
        """Write the live memory as folded stacks (flamegraph.pl, speedscope),
        the value of each stack in ``"bytes"`` or ``"count"`` (blocks)."""
        from .export import write_folded

        write_folded(self, path, value)

    # -- filtering ----------------------------------------------------------

    @untraced
    def filter_traces(self, filters: Iterable[BaseFilter]) -> Snapshot:
        """A new snapshot with only the traces that pass *filters*.

        Inclusive filters keep a trace if any of them matches; exclusive
        filters drop it if any of them rejects it.
        """
        if not isinstance(filters, Iterable):
            raise TypeError(
                "filters must be a list of filters, not %s" % type(filters).__name__
            )
        filters = list(filters)
        include = [f for f in filters if f.inclusive]
        exclude = [f for f in filters if not f.inclusive]
        per_site = all(type(f) in (Filter, DomainFilter) for f in filters)
        if not per_site:
            traces = [t for t in self.traces._traces if _passes(include, exclude, t)]
            return self._derived(Snapshot(traces, self.traceback_limit)._raw)
        keep = [
            _passes(include, exclude, (s.domain, s.size, s.frames, s.total_nframe))
            for s in self._raw.sites
        ]
        return self._derived(self._keep_sites(keep))

    def _keep_sites(self, keep: List[bool]) -> RawSnapshot:
        raw = self._raw
        new_index = array("I")
        sites = []
        for site, kept in zip(raw.sites, keep):
            new_index.append(len(sites))
            if kept:
                sites.append(site)
        fields = {**vars(raw), "sites": sites}
        if raw.block_sites is not None and raw.block_sizes is not None:
            if len(sites) == len(raw.sites):
                fields["block_sites"] = array("I", raw.block_sites)
                fields["block_sizes"] = array("Q", raw.block_sizes)
            else:
                pairs = [
                    (new_index[s], size)
                    for s, size in zip(raw.block_sites, raw.block_sizes)
                    if keep[s]
                ]
                fields["block_sites"] = array("I", [p[0] for p in pairs])
                fields["block_sizes"] = array("Q", [p[1] for p in pairs])
        return RawSnapshot(**fields)

    def _derived(self, raw: RawSnapshot) -> Snapshot:
        snapshot = Snapshot._from_raw(raw)
        snapshot.traceback_limit = self.traceback_limit
        return snapshot

    # -- grouping -----------------------------------------------------------
    #
    # Groups are keyed by plain tuples of frames (most recent first, as the
    # core reports them): hashing and comparing those runs in C, and the
    # value objects are only built for what is returned.  Sorting on
    # ``frames[::-1]`` orders exactly as tracemalloc's Traceback objects do
    # (they compare their frames oldest first).

    @untraced
    def _group_cheap(
        self, key_type: str, cumulative: bool
    ) -> Tuple[Dict[Any, Figures], Callable[[Any], RawFrames]]:
        """Sizes and counts under a cheap key (a frame, a filename: no tuple
        built per site), and the function that turns a key into frames."""
        if key_type not in KEY_TYPES:
            raise ValueError(f"unknown key_type: {key_type!r}")
        if cumulative and key_type not in ("lineno", "filename"):
            # userline too: it picks one frame of a traceback by design.
            raise ValueError(
                "cumulative mode cannot by used with key type %r" % key_type
            )
        groups: Dict[Any, Figures] = {}
        if key_type == "lineno" and not cumulative:
            # The commonest grouping, and top()'s default: a loop of its
            # own, a third faster over 100,000 sites than the general one.
            for _domain, frames, _total, count, size, _low, _tag in self._raw.sites:
                if count:
                    key = frames[0]
                    entry = groups.get(key)
                    if entry is not None:
                        size += entry[0]
                        count += entry[1]
                    groups[key] = (size, count)
            return groups, _FRAMES_OF_KEY[key_type]
        for _domain, frames, _total, count, size, _low, _tag in self._raw.sites:
            if count == 0:
                continue
            if cumulative:
                keys = frames if key_type == "lineno" else [f[0] for f in frames]
            elif key_type == "traceback":
                keys = (frames,)
            elif key_type == "userline":
                keys = (user_raw_frame(frames),)
            else:
                keys = (frames[0] if key_type == "lineno" else frames[0][0],)
            for key in keys:
                entry = groups.get(key)
                groups[key] = (
                    (size, count)
                    if entry is None
                    else (entry[0] + size, entry[1] + count)
                )
        return groups, _FRAMES_OF_KEY[key_type]

    def _group_raw(self, key_type: str, cumulative: bool) -> Dict[RawFrames, Figures]:
        """``{frames: (size, count)}`` grouped by *key_type*."""
        groups, frames_of = self._group_cheap(key_type, cumulative)
        return {frames_of(key): figures for key, figures in groups.items()}

    def _group_by(self, key_type: str, cumulative: bool) -> Dict[Traceback, Statistic]:
        return {
            stat.traceback: stat
            for stat in _statistics(self._group_raw(key_type, cumulative).items())
        }

    @untraced
    def statistics(self, key_type: str, cumulative: bool = False) -> List[Statistic]:
        """Statistics grouped by *key_type*, the biggest first.

        *key_type* is ``'filename'``, ``'lineno'`` or ``'traceback'`` (as
        in tracemalloc), or ``'userline'``: the most recent frame in the
        user's code, not in the standard library, an installed package or
        pyleakhunt (`pyleakhunt.userframe`); with *cumulative* (``lineno``
        and ``filename`` only), every frame of a traceback counts, not only
        the most recent one.
        """
        groups = self._group_raw(key_type, cumulative)
        ordered = sorted(groups.items(), key=_statistic_order, reverse=True)
        return _statistics(ordered)

    @untraced
    def compare_to(
        self, old_snapshot: Snapshot, key_type: str, cumulative: bool = False
    ) -> List[StatisticDiff]:
        """Differences from *old_snapshot*, the biggest change first."""
        rows = _raw_diffs(
            old_snapshot._group_raw(key_type, cumulative),
            self._group_raw(key_type, cumulative),
        )
        rows.sort(key=_change_order, reverse=True)
        return _statistic_diffs(rows)

    @untraced
    def top(
        self, n: int = 10, key_type: str = "lineno", cumulative: bool = False
    ) -> List[Statistic]:
        """The *n* biggest statistics: ``statistics(...)[:n]``, cheaper."""
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        groups, frames_of = self._group_cheap(key_type, cumulative)
        # A traceback key orders by its frames oldest first, as Traceback
        # does; a frame or a filename orders as itself.
        order = _REVERSED if key_type == "traceback" else None
        return [
            Statistic(Traceback(frames_of(key)), size, count)
            for key, (size, count) in _largest_groups(groups, n, order)
        ]

    @untraced
    def diff(
        self, old: Snapshot, key_type: str = "lineno", cumulative: bool = False
    ) -> List[StatisticDiff]:
        """Differences from *old*, the biggest growth first."""
        rows = _raw_diffs(
            old._group_raw(key_type, cumulative),
            self._group_raw(key_type, cumulative),
        )
        rows.sort(key=_growth_order, reverse=True)
        return _statistic_diffs(rows)

    def __repr__(self) -> str:
        kind = "aggregated" if self.is_aggregated else "full"
        return "<Snapshot %s sites=%d size=%s%s>" % (
            kind,
            len(self._raw.sites),
            format_size(sum(s.size for s in self._raw.sites)),
            " (estimated)" if self.is_estimated else "",
        )


#: From the cheap grouping key of each key type to its frames.
_FRAMES_OF_KEY: Dict[str, Callable[[Any], RawFrames]] = {
    "traceback": lambda frames: frames,
    "lineno": lambda frame: (frame,),
    "userline": lambda frame: (frame,),
    "filename": lambda filename: ((filename, 0),),
}


def raw_group_key(key_type: str, frames: RawFrames) -> RawFrames:
    """The frames a site (or one frame of it) is grouped under."""
    if key_type == "traceback":
        return frames
    if key_type == "lineno":
        return frames[:1]
    if key_type == "userline":
        return (user_raw_frame(frames),)
    return ((frames[0][0], 0),)


def group_key(key_type: str, part: Any, cumulative: bool) -> Traceback:
    """The traceback a site (or, when cumulative, one frame) is grouped under."""
    frames = (part,) if cumulative else part
    return Traceback(raw_group_key(key_type, frames))


#: Predicate applied to a traceback, for APIs that take ``ignore=``.
TracebackPredicate = Callable[[Traceback], bool]
