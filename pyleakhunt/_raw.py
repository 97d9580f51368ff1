"""The raw snapshot model shared by the tracer, snapshots and the file format.

A snapshot is a list of *sites*.  A site is one (domain, traceback, tag)
triple with its live aggregates; the C core keeps exactly these figures up to
date as blocks come and go.  A full snapshot adds one record per live block
(the index of its site and its size); an aggregated snapshot has none.

Everything here is plain data: no behaviour, so that every layer above
(`snapshot`, `fileformat`, the CLI, the integrations) can share it without
depending on each other.
"""

from __future__ import annotations

import itertools
from array import array
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

#: A frame as the core reports it: ``(filename, lineno)``.
RawFrame = Tuple[str, int]
#: Frames of one traceback, the most recent call first.
RawFrames = Tuple[RawFrame, ...]


class RawSite(NamedTuple):
    """Live aggregates of one (domain, traceback, tag) call site.

    A named tuple: snapshots hold one per call site, up to hundreds of
    thousands, and a tuple is the cheapest record Python has.
    """

    domain: int
    frames: RawFrames
    total_nframe: Optional[int]
    count: int
    size: int
    #: The lowest ``size`` since the previous snapshot, or since the site
    #: was made: its floor, which a leak raises and memory that comes and
    #: goes between snapshots does not.  0 when unknown (a floor of 0
    #: never makes a suspect: `pyleakhunt.growth`).
    low: int = 0
    #: Request tag (see ``RawSnapshot.tags``); 0 means untagged.
    tag: int = 0


@dataclass
class RawSnapshot:
    """Everything a snapshot holds, with no behaviour attached."""

    traceback_limit: int
    sites: List[RawSite]
    #: Full snapshots only: for each live block, the index of its site in
    #: ``sites`` (typecode ``'I'``) and its size in bytes (typecode ``'Q'``).
    block_sites: Optional[array] = None
    block_sizes: Optional[array] = None
    #: Tag number -> name (for example an HTTP endpoint).
    tags: Dict[int, str] = field(default_factory=dict)
    #: Mean sampling gap in bytes; 0 means every allocation is traced, so
    #: figures are exact.  When non-zero, ``count`` and ``size`` are
    #: unbiased estimates.
    sample_bytes: int = 0
    #: Blocks the tracer failed to record (its own memory exhausted).
    lost_blocks: int = 0
    pid: int = 0
    #: Seconds since the epoch when the snapshot was taken.
    timestamp: float = 0.0
    #: Extra user attributes (JSON-compatible values only).
    attrs: Dict[str, Any] = field(default_factory=dict)

    @property
    def is_full(self) -> bool:
        """True when per-block records are present."""
        return self.block_sites is not None


@dataclass
class RawColumns:
    """A snapshot whose sites are columns, as a file stores them.

    Reading a big timeline for a report needs only each site's traceback,
    count and size: building one `RawSite` for each site of every entry
    (two million for 200 entries of 10,000 sites) was most of the reading.
    `to_snapshot` builds the `RawSnapshot` when one is needed.
    """

    traceback_limit: int
    #: The entry's traceback table: site *i* has the frames
    #: ``tracebacks[traceback_index[i]]``.  Consecutive entries of one
    #: file share the table object when it did not change.
    tracebacks: Sequence[RawFrames]
    traceback_index: Sequence[int]
    domains: Sequence[int]
    #: ``total_nframe + 1``, 0 for None (as the file stores it).
    total_nframes: Sequence[int]
    counts: Sequence[int]
    sizes: Sequence[int]
    lows: Sequence[int]
    tags: Sequence[int]
    block_sites: Optional[array] = None
    block_sizes: Optional[array] = None
    tag_names: Dict[int, str] = field(default_factory=dict)
    sample_bytes: int = 0
    lost_blocks: int = 0
    pid: int = 0
    timestamp: float = 0.0
    attrs: Dict[str, Any] = field(default_factory=dict)

    def to_snapshot(self) -> RawSnapshot:
        """The same snapshot with one `RawSite` per site."""
        total_nframes = [nf - 1 if nf else None for nf in self.total_nframes]
        site_frames = map(self.tracebacks.__getitem__, self.traceback_index)
        rows = zip(
            self.domains,
            site_frames,
            total_nframes,
            self.counts,
            self.sizes,
            self.lows,
            self.tags,
        )
        # tuple.__new__(RawSite, row) builds each named tuple in C, without
        # the Python-level RawSite(...): a timeline has millions of sites.
        sites = list(map(tuple.__new__, itertools.repeat(RawSite), rows))
        return RawSnapshot(
            traceback_limit=self.traceback_limit,
            sites=sites,  # type: ignore[arg-type]
            block_sites=self.block_sites,
            block_sizes=self.block_sizes,
            tags=self.tag_names,
            sample_bytes=self.sample_bytes,
            lost_blocks=self.lost_blocks,
            pid=self.pid,
            timestamp=self.timestamp,
            attrs=self.attrs,
        )
