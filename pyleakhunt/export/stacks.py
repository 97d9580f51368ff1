"""The data every exporter writes: stacks with a byte and a block count.

A `StackProfile` is a list of `StackSample` (one per call site) plus what a
reader needs to interpret the numbers: whether they are estimates, when they
were taken, and of which process.  `live_memory` makes one from a snapshot
(what is live), `growth` from two (what grew in between).  The exporters
(`pyleakhunt.export.pprof`, `pyleakhunt.export.folded`) only format it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List, Tuple, Union

from .._raw import RawFrames
from ..snapshot import Snapshot
from ..units import format_size

__all__ = ["StackProfile", "StackSample", "growth", "live_memory"]

#: A label of a sample: ``("endpoint", "/cart")`` or ``("domain", 3)``.
Label = Tuple[str, Union[str, int]]


@dataclass(frozen=True)
class StackSample:
    """Memory attributed to one stack."""

    #: ``(filename, lineno)`` frames, the most recent call first.
    frames: RawFrames
    #: Bytes (estimated when the profile is).
    size: int
    #: Blocks (estimated when the profile is).
    count: int
    labels: Tuple[Label, ...] = ()


@dataclass
class StackProfile:
    """Stacks with sizes and counts, and how to read them."""

    samples: List[StackSample]
    #: Mean sampling gap in bytes; 0 when the figures are exact.
    sample_bytes: int = 0
    #: When the (newer) snapshot was taken, seconds since the epoch.
    timestamp: float = 0.0
    #: For a growth profile: seconds between the two snapshots.
    duration: float = 0.0
    pid: int = 0
    #: Lines a reader should see (pprof ``comment``s).
    comments: List[str] = field(default_factory=list)

    @property
    def is_estimated(self) -> bool:
        """True when sizes and counts are estimates from sampled tracing."""
        return self.sample_bytes > 0


def _stamp(timestamp: float) -> str:
    if not timestamp:
        return "an unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(timestamp))


def _accuracy_comment(sample_bytes: int) -> str:
    if not sample_bytes:
        return "exact: every allocation was traced"
    return (
        "estimated: sampled tracing recorded about one allocation per %s; "
        "sizes and counts are unbiased estimates (each recorded block weighs "
        "1/p, p its chance of being recorded)" % format_size(sample_bytes)
    )


def live_memory(snapshot: Snapshot) -> StackProfile:
    """Live memory per call site of *snapshot*: one sample per site."""
    raw = snapshot.raw
    samples = []
    for site in raw.sites:
        if site.count <= 0 and site.size <= 0:
            continue
        labels: List[Label] = []
        if site.tag:
            labels.append(("endpoint", raw.tags.get(site.tag, str(site.tag))))
        if site.domain:
            labels.append(("domain", site.domain))
        samples.append(StackSample(site.frames, site.size, site.count, tuple(labels)))
    comments = [
        "pyleakhunt: live memory of pid %d at %s" % (raw.pid, _stamp(raw.timestamp)),
        _accuracy_comment(raw.sample_bytes),
    ]
    if raw.lost_blocks:
        comments.append(
            "incomplete: the tracer failed to record %d blocks" % raw.lost_blocks
        )
    return StackProfile(
        samples,
        sample_bytes=raw.sample_bytes,
        timestamp=raw.timestamp,
        pid=raw.pid,
        comments=comments,
    )


def growth(old: Snapshot, new: Snapshot) -> StackProfile:
    """What grew from *old* to *new*: one sample per traceback whose live
    size grew, valued by the growth (sites that shrank are left out).

    A block count that fell while the size grew counts as 0.
    """
    samples = []
    for diff in new.diff(old, key_type="traceback"):
        if diff.size_diff <= 0:
            continue
        frames = diff.traceback.raw_frames
        samples.append(StackSample(frames, diff.size_diff, max(diff.count_diff, 0)))
    sample_bytes = max(old.sample_bytes, new.sample_bytes)
    comments = [
        "pyleakhunt: growth of live memory (positive differences only) of "
        "pid %d from %s to %s"
        % (new.pid, _stamp(old.timestamp), _stamp(new.timestamp)),
        _accuracy_comment(sample_bytes),
    ]
    if old.pid != new.pid:
        comments.append(
            "warning: the snapshots come from different processes (pids %d and %d)"
            % (old.pid, new.pid)
        )
    lost = max(old.lost_blocks, new.lost_blocks)
    if lost:
        comments.append("incomplete: the tracer failed to record %d blocks" % lost)
    duration = new.timestamp - old.timestamp if old.timestamp else 0.0
    return StackProfile(
        samples,
        sample_bytes=sample_bytes,
        timestamp=new.timestamp,
        duration=max(duration, 0.0),
        pid=new.pid,
        comments=comments,
    )


def as_profile(source: Union[Snapshot, StackProfile]) -> StackProfile:
    """*source* itself, or the live memory of a snapshot."""
    if isinstance(source, StackProfile):
        return source
    if isinstance(source, Snapshot):
        return live_memory(source)
    raise TypeError(
        "expected a Snapshot or a StackProfile, not %s" % type(source).__name__
    )
