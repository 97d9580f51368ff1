"""Sustained growth: the one rule that decides what is a leak suspect.

The watcher, the ``suspects`` command and the web integrations all ask the
same question of a series of snapshots, so the answer lives here only.

For a call site with live sizes ``s0 .. sn`` at times ``t0 .. tn``:

- its **net growth** ``sn - s0`` must be positive and at least
  ``min_growth_bytes``;
- it must still be growing at the end: the second half of the window must
  grow at least a third as fast as the first half.  A cache that fills and
  then plateaus fails this;
- most of what it gained must have stayed: the net growth must be at least
  half of the sum of its increases.  Memory that is allocated and freed
  (churn) fails this;
- **consistency** is the fraction of intervals in which it grew; a site
  must grow in at least ``min_consistency`` of them, or else grow like a
  staircase: in bursts (``min_rises`` of them at least, spread over half
  the window), never given back, the last not longer ago than 1.5 times
  the widest gap between two (twice when each rise doubles the last).  A
  leak that comes with a job run every few minutes grows in few
  intervals, but in steps that stay.

A site that held nothing from the first sample until some sample, and
something at every sample since, is also judged from the sample before
that one (if a quarter of the samples at least are left): a leak that
began late in the run grew in too few of the whole window's intervals.

A site that falls now and then by much more than it rises (a cache swept
every few samples) is also a suspect when its lows (its floors just after
its falls) rise (`GrowthRule._sawtooth`): a sweep that keeps part of each
round gives back most of what it gained, and fails the tests above, but
its lows climb.

The same rule is also asked of what the site **held from each sample on**:
the least it held at any moment from the sample before to the end of the
series, from its floors (at each sample, the lowest size it had since the
sample before: the tracer keeps that low-water mark between snapshots).
A line that keeps one small object of every batch it makes, or calls a
library that keeps a little of each call while it allocates a lot for the
call, has live sizes that depend on when the sample came (mid-batch or
not): the leak drowns in them and fails the churn test, for as long as the
program runs.  What it held from each sample on is what the leak kept, and
grows steadily.  Memory that comes and goes, or that is freed before the
end, leaves it flat.  A site is a suspect when either series passes
(`held_series` says which floors it reads, and why).

Suspects are ranked by growth rate (least-squares slope of size, or of
floor when only the floors grew, against time) times consistency.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import operator
import os
import statistics
from dataclasses import dataclass, replace
from typing import (
    Any,
    Callable,
    Dict,
    Hashable,
    Iterable,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
)

from ._raw import RawSnapshot
from .snapshot import Snapshot, Traceback, group_key, untraced
from .userframe import user_frame_json

#: The tracer's own modules: memory they hold (snapshots kept by a watcher)
#: is the hunter's, not the program's.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
TRACER_FILES = frozenset(
    os.path.join(_PACKAGE_DIR, name)
    for name in (
        "__init__.py",
        "_raw.py",
        "snapshot.py",
        "growth.py",
        "watcher.py",
        "fileformat.py",
    )
)


@dataclass(frozen=True)
class Suspect:
    """A call site whose live memory keeps growing."""

    #: The grouping key: one frame for ``lineno`` and ``userline``, all
    #: frames for ``traceback``, a filename for ``filename``.
    key: Traceback
    #: The full traceback of the biggest site under this key.
    traceback: Traceback
    size: int
    count: int
    growth_bytes: int
    growth_bytes_per_s: float
    growth_bytes_per_snapshot: float
    #: Fraction of intervals in which the site grew (0 to 1).
    consistency: float
    samples: int
    duration_s: float
    #: True when figures are estimates from sampled tracing.
    estimated: bool = False
    #: True when it grew until the series' closing sample, which found it
    #: freed (`suspects_of_series`): the program's end let go of it.
    freed_at_exit: bool = False

    @property
    def filename(self) -> str:
        return self.key[-1].filename

    @property
    def lineno(self) -> int:
        return self.key[-1].lineno

    def to_json(self) -> Dict[str, Any]:
        """A JSON-ready dict; ``traceback`` is most recent call first;
        ``user_frame`` is the most recent frame of the traceback in the
        user's code and ``via`` the library frame that allocated, or None
        (`pyleakhunt.userframe.user_frame_json`)."""
        doc: Dict[str, Any] = {
            "filename": self.filename,
            "lineno": self.lineno,
            "size": self.size,
            "count": self.count,
            "growth_bytes": self.growth_bytes,
            "growth_bytes_per_s": self.growth_bytes_per_s,
            "growth_bytes_per_snapshot": self.growth_bytes_per_snapshot,
            "consistency": self.consistency,
            "samples": self.samples,
            "duration_s": self.duration_s,
            "estimated": self.estimated,
            "freed_at_exit": self.freed_at_exit,
            "traceback": [[f.filename, f.lineno] for f in reversed(self.traceback)],
        }
        doc.update(user_frame_json(self.traceback))
        return doc


@dataclass
class Sample:
    """One snapshot reduced to what growth analysis needs."""

    timestamp: float
    #: key -> (size, count, floor): floor is the key's lowest size since the
    #: sample before (its sites' low-water marks, summed).
    figures: Dict[Traceback, Tuple[int, int, int]]
    estimated: bool = False
    #: The closing sample of its series (`CLOSING_ATTR`).
    closing: bool = False


@untraced
def reduce_snapshot(
    snapshot: Snapshot,
    key_type: str = "lineno",
    max_keys: Optional[int] = None,
    exclude_tracer: bool = True,
) -> Tuple[Sample, Dict[Traceback, Traceback]]:
    """Group *snapshot* by *key_type*; also return each key's biggest site.

    With *max_keys*, only the biggest keys are kept, which bounds the memory
    of a long series.
    """
    figures: Dict[Traceback, List[int]] = {}
    biggest: Dict[Traceback, Tuple[int, Traceback]] = {}
    cache: Dict[Any, Traceback] = {}
    for site in snapshot.sites:
        if site.count == 0:
            continue
        if exclude_tracer and any(f[0] in TRACER_FILES for f in site.frames):
            continue
        key = cache.get(site.frames)
        if key is None:
            key = cache[site.frames] = group_key(key_type, site.frames, False)
        entry = figures.setdefault(key, [0, 0, 0])
        entry[0] += site.size
        entry[1] += site.count
        entry[2] += site.low
        if site.size > biggest.get(key, (-1, None))[0]:
            biggest[key] = (site.size, Traceback(site.frames))
    keys = list(figures)
    if max_keys is not None and len(keys) > max_keys:
        keys.sort(key=lambda k: figures[k][0], reverse=True)
        keys = keys[:max_keys]
    sample = Sample(
        snapshot.timestamp,
        {k: (figures[k][0], figures[k][1], figures[k][2]) for k in keys},
        snapshot.is_estimated,
        closing=is_closing(snapshot.raw),
    )
    return sample, {k: biggest[k][1] for k in keys}


#: The attribute (`RawSnapshot.attrs`) of a series' closing sample: the one
#: `LeakWatcher.stop` takes, after the program (or the part watched) ended.
CLOSING_ATTR = "closing"


def is_closing(raw: RawSnapshot) -> bool:
    """Whether *raw* is the closing sample of its series (`CLOSING_ATTR`)."""
    return isinstance(raw.attrs, dict) and raw.attrs.get(CLOSING_ATTR) is True


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The least-squares slope of *ys* over *xs* (0 when *xs* do not vary)."""
    n = len(xs)
    mean_x = sum(xs) / n
    mean_y = sum(ys) / n
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var


@dataclass(frozen=True)
class GrowthRule:
    """The thresholds of the sustained-growth rule (see the module doc)."""

    min_samples: int = 4
    min_growth_bytes: int = 1024
    min_consistency: float = 0.5
    min_late_rate: float = 1 / 3
    min_retained: float = 0.5
    #: Rises that a series growing in fewer than *min_consistency* of its
    #: intervals needs (`_staircase`).
    min_rises: int = 3
    #: The most of its rises that a staircase may give back.
    max_staircase_given_back: float = 0.1
    #: The most of its intervals in which a sawtooth may fall (`_sawtooth`).
    max_sawtooth_falls: float = 0.4
    #: The lows (sizes after its sweeps) that a sawtooth needs.
    min_lows: int = 5

    def judge(
        self,
        times: Sequence[float],
        sizes: Sequence[int],
        bursts: bool = True,
        floors: Optional[Sequence[int]] = None,
    ) -> Optional[float]:
        """The consistency of a growing series, or None if it is not a suspect.

        With *bursts*, growth in few intervals may pass as a staircase
        (`_staircase`), and a series that falls now and then as a sawtooth
        (`_sawtooth`, which reads its lows from *floors* when given).  Not
        for what a key held from each sample on: that series never falls,
        and the least of noisy floors climbs in steps.
        """
        if len(sizes) < self.min_samples:
            return None
        steps = [b - a for a, b in zip(sizes, sizes[1:])]
        if bursts and self._sawtooth(times, sizes, steps, floors):
            return sum(1 for d in steps if d > 0) / len(steps)
        if not self._kept_growth(sizes):
            return None
        middle = len(sizes) // 2
        early = _rate(times[: middle + 1], sizes[: middle + 1])
        late = _rate(times[middle:], sizes[middle:])
        if late <= 0 or late < self.min_late_rate * early:
            return None  # plateau: it stopped growing
        consistency = sum(1 for d in steps if d > 0) / len(steps)
        if consistency < self.min_consistency and not (
            bursts and self._staircase(times, steps)
        ):
            return None
        return consistency

    def _kept_growth(self, sizes: Sequence[int]) -> bool:
        """Whether *sizes* grew by `min_growth_bytes` at least and kept
        `min_retained` of what they gained (else churn: what it gained, it
        mostly gave back)."""
        net = sizes[-1] - sizes[0]
        if net < max(self.min_growth_bytes, 1):
            return False  # most keys: asked first, it is cheap
        gained = sum(b - a for a, b in zip(sizes, sizes[1:]) if b > a)
        return net >= self.min_retained * gained

    def _staircase(self, times: Sequence[float], steps: Sequence[int]) -> bool:
        """Whether growth in few intervals is still a leak: one that comes
        in bursts (a batch job, a periodic task) and is never given back.

        It rose at least `min_rises` times, none of them by more than two
        thirds of its net growth (a dict or list that grows in place
        doubles, at most: its last step is half of all its growth); in most
        intervals in which it changed it rose; its rises span half the
        series at least (a cache warmed in one go, however late, does not);
        and it has not been quiet at the end for longer than 1.5 times the
        widest gap between two of its rises (or it stopped: a plateau); twice,
        when each rise is half as big again as the one before at least (a
        container filled steadily doubles after twice its last gap).
        Steps smaller than an eighth of its mean rise count as neither
        rises nor falls: a full deque whose items vary by a few bytes
        would never be quiet.
        """
        gains = [d for d in steps if d > 0]
        if not gains:
            return False
        noise = sum(gains) / len(gains) / 8
        steps = [d if abs(d) > noise else 0 for d in steps]
        rises = [times[i + 1] for i, d in enumerate(steps) if d > 0]
        falls = sum(1 for d in steps if d < 0)
        if len(rises) < self.min_rises:
            return False
        if max(steps) > 2 / 3 * sum(steps):
            return False
        if len(rises) < self.min_consistency * (len(rises) + falls):
            return False
        given_back = -sum(d for d in steps if d < 0)
        if given_back > self.max_staircase_given_back * sum(gains):
            return False
        duration = times[-1] - times[0]
        # The first rise happened after the sample before it.
        first = times[steps.index(next(d for d in steps if d > 0))]
        if rises[-1] - first < duration / 2:
            return False
        widest = max(b - a for a, b in zip(rises, rises[1:]))
        # A container filled steadily doubles after twice its last gap, by
        # as much as it grew in all: that one may be quiet twice as long.
        grown = [d for d in steps if d > 0]
        doubling = all(b >= 1.5 * a for a, b in zip(grown, grown[1:]))
        return times[-1] - rises[-1] <= (2 if doubling else 1.5) * widest

    def _sawtooth(
        self,
        times: Sequence[float],
        sizes: Sequence[int],
        steps: Sequence[int],
        floors: Optional[Sequence[int]],
    ) -> bool:
        """Whether a series that falls now and then is still a leak
        (`_sawtooth_lows`)."""
        return self._sawtooth_lows(times, sizes, steps, floors) is not None

    def _sawtooth_lows(
        self,
        times: Sequence[float],
        sizes: Sequence[int],
        steps: Sequence[int],
        floors: Optional[Sequence[int]],
    ) -> Optional[List[int]]:
        """The indices of the lows of a series that falls now and then and
        is still a leak, else None: a cache
        swept every few samples that keeps part of each round.

        Its live size is a sawtooth, which the churn test fails (it gives
        back most of what it gains), and what it held from each sample on
        rises once a sweep.  What rises steadily is its lows: its floors
        at the samples just after its falls (the least it held at the
        sweep; its sizes there when the floors are unknown).  It rose in
        most intervals and fell in few (at most `max_sawtooth_falls` of
        them), its falls half as big again as its rises on average at
        least (a sweep gives back what several intervals gained; a random
        walk falls as far as it rises).  It had
        `min_lows` lows at least, in rising order but for at most one pair
        of them per low beyond `min_lows` (lows that only jitter are in
        that order at most once in a hundred; a dict swept in place keeps
        its table, which grows and shrinks, and may put one low out of
        order); they rose by `min_growth_bytes`, and over their second half
        too (not as fast as over the first, maybe: the table of a dict
        swept in place doubles early, then holds, and counts at the same
        line); and it has not been quiet since the last low for longer
        than 1.5 times the widest gap between two.  The first sample is
        no low: the series may begin anywhere in a round.
        """
        rises = sum(1 for d in steps if d > 0)
        falls = sum(1 for d in steps if d < 0)
        if rises < self.min_consistency * len(steps):
            return None
        if falls == 0 or falls > self.max_sawtooth_falls * len(steps):
            return None
        gained = sum(d for d in steps if d > 0)
        given_back = -sum(d for d in steps if d < 0)
        if given_back / falls < 1.5 * gained / rises:
            return None
        lows = _lows(steps)
        if len(lows) < self.min_lows:
            return None
        at = [times[i] for i in lows]
        # A sample's floor covers the sweep before it: a cache emptied
        # every second at steady load, sampled every 0.2017 s, showed
        # sizes after its sweeps that climbed with the phase between the
        # two clocks; its floors there were 32 bytes every time.
        low = [(sizes if floors is None else floors)[i] for i in lows]
        most = len(low) - self.min_lows
        if _inversions(low, most) > most:
            return None
        if low[-1] - low[0] < max(self.min_growth_bytes, 1):
            return None
        if low[-1] <= low[len(low) // 2]:
            return None  # its second half of lows did not rise
        widest = max(b - a for a, b in zip(at, at[1:]))
        return lows if times[-1] - at[-1] <= 1.5 * widest else None

    def verdict(
        self,
        times: Sequence[float],
        sizes: Sequence[int],
        floors: Optional[Sequence[int]] = None,
        min_slope: Optional[float] = None,
    ) -> Optional[Tuple[float, Sequence[float], Sequence[int]]]:
        """Whether a key with live *sizes* at *times* is a suspect: None, or
        its consistency with the times and the series that grew.  That is
        the sizes or else, from its *floors* (at each sample, its lowest
        size since the sample before), what it held from each sample on
        (`held_series`).  With *min_slope*, a series grows only if its
        least-squares slope reaches it too.

        A key that held the same from the first sample until some sample
        (nothing, or what a program kept before a watcher started), and
        more at every sample since, is also judged from the last sample
        at that level, if that leaves a quarter of the samples at least:
        its series before is no growth it could have shown.  (Not a key
        that came and went: a random walk that touches its first level
        then climbs for a while would pass.)  A leak that began after half
        the run grew in too few of the whole window's intervals."""
        consistency = self.judge(times, sizes, floors=floors)
        if consistency is not None:
            xs, grown = self._grown(times, sizes, floors)
            if _reaches(xs, grown, min_slope):
                return consistency, xs, grown
        slowed = self._slowed(times, sizes)
        if slowed is not None and _reaches(slowed[1], slowed[2], min_slope):
            return slowed
        enough = max(self.min_samples, -(-len(sizes) // 4))
        start = _left_flat(sizes)
        if start and len(sizes) - start >= enough:
            tail = _tail(floors, start)
            consistency = self.judge(times[start:], sizes[start:], floors=tail)
            if consistency is not None:
                xs, grown = self._grown(times[start:], sizes[start:], tail)
                if _reaches(xs, grown, min_slope):
                    return consistency, xs, grown
        if floors is None:
            return None
        xs, held = held_series(times, sizes, floors)
        if len(held) < enough:
            return None  # it appeared in the last quarter: not yet judged
        consistency = self.judge(xs, held, bursts=False)
        if consistency is None or not _reaches(xs, held, min_slope):
            return None
        # It must have grown in its first half too, at a third of its
        # second half's rate at least: the least of a run of noisy floors
        # climbs towards their end, and a leak's does not wait for the end.
        middle = len(held) // 2
        early = _rate(xs[: middle + 1], held[: middle + 1])
        late = _rate(xs[middle:], held[middle:])
        if early <= 0 or early < self.min_late_rate * late:
            return None
        return consistency, xs, held

    def _slowed(
        self, times: Sequence[float], sizes: Sequence[int]
    ) -> Optional[Tuple[float, Sequence[float], Sequence[int]]]:
        """The consistency, times and sizes of the second half of a leak
        that slowed down, else None.

        A leak whose callers thinned out (170 KB a second for three
        seconds, then 3 KB a second) fails the whole window's plateau
        test, its late rate a fiftieth of its early one, as a cache that
        has warmed up does. What tells them apart is the second half: a
        warm cache is flat there, or grows now and then, or ever more
        slowly; the leak still grows steadily. So a series whose first
        half grew (by `min_growth_bytes`, not churn) is judged again on
        its second half alone, by a stricter rule (`_slowed_rule`), with
        neither staircase nor sawtooth, and measured there: its rate is
        the one it leaks at now. That half must not slow down either: the
        median of its rates between samples over its second half is two
        thirds of that over its first half at least (a cache filling up
        slows down all the time; medians, because the list that keeps a
        leak's objects grows in jumps).
        """
        middle = len(sizes) // 2
        # Twice the samples a rule needs: on second halves of four to
        # seven samples, a warm cache's jitter passed once in a hundred.
        if len(sizes) - middle < 2 * self.min_samples:
            return None
        if not self._kept_growth(sizes[: middle + 1]):
            return None
        times, sizes = times[middle:], sizes[middle:]
        consistency = self._slowed_rule().judge(times, sizes, bursts=False)
        if consistency is None:
            return None
        rates = [
            (b - a) / max(t1 - t0, 1e-9)
            for t0, t1, a, b in zip(times, times[1:], sizes, sizes[1:])
        ]
        half = len(rates) // 2
        if statistics.median(rates[half:]) < 2 / 3 * statistics.median(rates[:half]):
            return None
        return consistency, times, sizes

    def _slowed_rule(self) -> GrowthRule:
        """The stricter rule for a slowed leak's second half: it grew in
        three quarters of its intervals and kept four fifths of what it
        gained."""
        return replace(
            self,
            min_consistency=max(self.min_consistency, 0.75),
            min_retained=max(self.min_retained, 0.8),
        )

    def _grown(
        self,
        times: Sequence[float],
        sizes: Sequence[int],
        floors: Optional[Sequence[int]],
    ) -> Tuple[Sequence[float], Sequence[int]]:
        """The series in which a suspect's growth is measured: its lows, at
        their times, when it passed as a sawtooth (`_sawtooth_lows`), else
        its sizes.  A line that keeps one row of every batch and is
        sampled mid-batch swings by megabytes from sample to sample, and a
        slope fitted through those swings may even fall: the suspect then
        came after one that kept an int a batch."""
        steps = [b - a for a, b in zip(sizes, sizes[1:])]
        lows = self._sawtooth_lows(times, sizes, steps, floors)
        if lows is None:
            return times, sizes
        values = sizes if floors is None else floors
        return [times[i] for i in lows], [values[i] for i in lows]


def _tail(values: Optional[Sequence[int]], start: int) -> Optional[Sequence[int]]:
    """*values* from *start* on (None stays None)."""
    return None if values is None else values[start:]


def _left_flat(sizes: Sequence[int]) -> int:
    """The index of the last sample at which a key still held exactly what
    it held at the first, if it held that at the second too and more at
    every sample after; else 0.  (Its first blocks, when it held none.)"""
    level = sizes[0]
    first = next((i for i, size in enumerate(sizes) if size != level), 0)
    if first < 2 or any(size <= level for size in sizes[first:]):
        return 0
    return first - 1


def _lows(steps: Sequence[int]) -> List[int]:
    """The indices of a series' lows, given its *steps*: of each fall (one
    or more falling steps in a row, unchanged samples between them) that
    a rise or the end of the series follows, the sample just after its
    last falling step."""
    lows = []
    fell_to = None  # the sample after the last falling step, if no rise since
    for i, d in enumerate(steps):
        if d < 0:
            fell_to = i + 1
        elif d > 0 and fell_to is not None:
            lows.append(fell_to)
            fell_to = None
    if fell_to is not None:
        lows.append(fell_to)
    return lows


def _inversions(values: Sequence[int], most: int) -> int:
    """How many pairs of *values* are out of rising order (a later one not
    above an earlier one), counted up to one more than *most*."""
    later: List[int] = []  # the values after the current one, sorted
    count = 0
    for value in reversed(values):
        count += bisect.bisect_right(later, value)
        if count > most:
            break
        bisect.insort(later, value)
    return count


#: The thresholds used unless a caller passes its own.
DEFAULT_RULE = GrowthRule()


def _reaches(
    xs: Sequence[float], ys: Sequence[int], min_slope: Optional[float]
) -> bool:
    """Whether the slope of *ys* over *xs* reaches *min_slope* (if any)."""
    return min_slope is None or len(xs) < 2 or slope(xs, ys) >= min_slope


def held_series(
    times: Sequence[float], sizes: Sequence[int], floors: Sequence[int]
) -> Tuple[Sequence[float], List[int]]:
    """The times and what a key held from each on (`held_from`), from its
    *floors*: from the first sample after one at which it held something
    (before, a floor covers the time before its first block: 0), to the
    one before the last (the last floor has no later one to correct it:
    two samples within one long batch)."""
    start = 1
    while start < len(sizes) and sizes[start - 1] == 0:
        start += 1
    return times[start:-1], held_from(floors[start:])[:-1]


def held_from(floors: Sequence[int]) -> List[int]:
    """For each sample, the least its key held at any moment from the sample
    before it to the end of the series: the lowest of its floor and of
    every later one.

    What a leak keeps is never given back, so this grows with the leak.
    A floor is high when no quiet moment fell between two samples (two
    samples within one long batch); a later, lower floor shows that most
    of that memory was given back, and replaces it.  Memory freed before
    the last sample, a program's clean-up included, is held to the end by
    no one: it makes no growth here.
    """
    held = list(floors)
    for i in range(len(held) - 2, -1, -1):
        if held[i + 1] < held[i]:
            held[i] = held[i + 1]
    return held


Key = TypeVar("Key", bound=Hashable)


def fold_floors(floors: Mapping[Key, int], before: Mapping[Key, int]) -> Dict[Key, int]:
    """The floors of a sample that takes over the interval of the sample
    before it, left out when a series is thinned: each key's lowest over
    both.  A key absent from *before* had no block then: a floor of 0."""
    return {key: min(low, before.get(key, 0)) for key, low in floors.items()}


Item = TypeVar("Item")


def drop_folding(
    items: Sequence[Item], kept: Sequence[bool], fold: Callable[[Item, Item], Item]
) -> List[Item]:
    """The *items* that *kept* marks, each folded with those left out just
    before it: ``fold(item, left_out)`` returns *item* covering the
    interval of *left_out* too (its floors: `fold_floors`).  A thinned
    series (the watcher's samples, an endpoint's points) keeps that way
    the lowest floor of every interval it drops."""
    result: List[Item] = []
    missed: Optional[Item] = None
    for item, keep in zip(items, kept):
        if missed is not None:
            item = fold(item, missed)
        if keep:
            result.append(item)
            missed = None
        else:
            missed = item
    return result


def thin_evenly(xs: Sequence[float], target: int) -> List[bool]:
    """Which of the points at *xs* (ascending) a bounded series keeps so
    that *target* are left, spread evenly over the whole span: each drop
    takes the inner point whose neighbours are closest together (its
    interval merges into the next one's), and the first and last points
    always stay.

    Halving the older half each time the series overflowed thinned the
    oldest points again at every overflow: after an hour at one sample a
    second, 120 samples were the first one and the last four minutes, and
    a leak that grew now and then (in bursts, or a list that reallocates)
    was judged on those minutes only, and missed.
    """
    alive = list(range(len(xs)))
    while len(alive) > max(target, 2):
        j = min(
            range(1, len(alive) - 1),
            key=lambda k: (xs[alive[k + 1]] - xs[alive[k - 1]], k),
        )
        del alive[j]
    kept = [False] * len(xs)
    for i in alive:
        kept[i] = True
    return kept


def _rate(times: Sequence[float], sizes: Sequence[int]) -> float:
    span = times[-1] - times[0]
    growth = sizes[-1] - sizes[0]
    if span > 0:
        return growth / span
    return float(growth)


@untraced
def find_suspects(
    samples: Sequence[Sample],
    tracebacks: Dict[Traceback, Traceback],
    rule: GrowthRule = DEFAULT_RULE,
) -> List[Suspect]:
    """Suspects in a time-ordered series of samples, best first."""
    if len(samples) < 2:
        return []
    closing = samples[-1].closing
    keys = set(samples[-1].figures)
    if closing:
        keys.update(samples[-2].figures)  # those the end freed whole
    # Each key's figures at each sample, one column per sample, then turned
    # into one row per key: C-level passes, where a lookup per key and per
    # sample in Python (two million for 200 samples of 10,000 sites) was
    # most of the time.
    absent = (0, 0, 0)
    columns = [
        list(map(s.figures.get, keys, itertools.repeat(absent))) for s in samples
    ]
    last = samples[-1].figures
    series = (
        (
            key,
            tuple(map(_SIZE, figures)),
            tuple(map(_FLOOR, figures)),
            last.get(key, absent)[1],
        )
        for key, figures in zip(keys, zip(*columns))
    )
    return suspects_of_series(
        [s.timestamp for s in samples],
        series,
        tracebacks,
        rule,
        estimated=any(s.estimated for s in samples),
        closing=closing,
    )


_SIZE = operator.itemgetter(0)
_FLOOR = operator.itemgetter(2)


def suspects_of_series(
    timestamps: Sequence[float],
    series: Iterable[Tuple[Any, Sequence[int], Optional[Sequence[int]], int]],
    tracebacks: Dict[Any, Traceback],
    rule: GrowthRule = DEFAULT_RULE,
    estimated: bool = False,
    closing: bool = False,
) -> List[Suspect]:
    """Suspects among series of live sizes, best first.

    *timestamps* are the samples' times, in order; *series* yields
    ``(key, sizes, floors, count)``: a key's live size at each sample (0
    where it had none), its floor at each (its lowest size since the sample
    before; None when unknown) and its block count at the last.
    *tracebacks* maps a key to the traceback its suspect shows (the key
    itself when absent).  The one implementation of the ranking, behind
    `find_suspects` and the report.

    With *closing*, the last sample is the series' closing one (taken
    after the program ended, `CLOSING_ATTR`), and a key that fell at it is
    also judged without it: what a program holds in a function's locals
    (``main()``), or in state a shutdown tears down, is freed before that
    sample, and a leak that grew at every sample until then read as a
    plateau.  Such a suspect is marked `Suspect.freed_at_exit`.
    """
    if len(timestamps) < 2:
        return []
    times = list(timestamps)
    if times[-1] <= times[0]:
        times = [float(i) for i in range(len(timestamps))]
    duration = timestamps[-1] - timestamps[0]
    suspects = []
    for key, sizes, floors, count in series:
        found = rule.verdict(times, sizes, floors)
        freed = False
        if found is None and closing and sizes[-1] < sizes[-2]:
            found = rule.verdict(
                times[:-1], sizes[:-1], None if floors is None else floors[:-1]
            )
            freed = found is not None
        if found is None:
            continue
        consistency, xs, grown = found
        per_s = slope(xs, grown)
        per_snapshot = slope(range(len(grown)), grown)
        suspects.append(
            Suspect(
                key=key,
                traceback=tracebacks.get(key, key),
                size=sizes[-1],
                count=count,
                growth_bytes=grown[-1] - grown[0],
                growth_bytes_per_s=per_s,
                growth_bytes_per_snapshot=per_snapshot,
                consistency=consistency,
                samples=len(timestamps),
                duration_s=duration,
                estimated=estimated,
                freed_at_exit=freed,
            )
        )
    # Ties (sites that grew alike) by size, then blocks: an order that does
    # not hang on the order the keys came in.
    suspects.sort(
        key=lambda s: (s.growth_bytes_per_s * s.consistency, s.size, s.count),
        reverse=True,
    )
    return suspects


@dataclass
class SeriesSuspects:
    """The suspects of a series of snapshots, with what the series held."""

    suspects: List[Suspect]
    samples: int
    first_timestamp: float
    last_timestamp: float
    #: The last nonzero pid of the series' snapshots (0 if none says).
    pid: int
    estimated: bool
    #: The most blocks any snapshot of the series failed to record.
    lost_blocks: int


@untraced
def analyse_series(
    snapshots: Iterable[RawSnapshot],
    key_type: str = "userline",
    rule: GrowthRule = DEFAULT_RULE,
) -> SeriesSuspects:
    """Suspects in raw snapshots given in any order, one at a time.

    Each snapshot is reduced to its per-key figures as it comes, so a long
    timeline read entry by entry (`pyleakhunt.fileformat.iter_timeline`)
    never has to fit in memory; the series is then ordered by time.  The
    one implementation behind `suspects_in` and ``pyleakhunt suspects``.
    """
    samples: List[Sample] = []
    #: key -> (timestamp, whole traceback of its biggest site then)
    latest: Dict[Traceback, Tuple[float, Traceback]] = {}
    canonical: Dict[Traceback, Traceback] = {}  # one key object per key
    pid = lost_blocks = 0
    for raw in snapshots:
        sample, biggest = reduce_snapshot(Snapshot._from_raw(raw), key_type)
        sample.figures = {
            canonical.setdefault(key, key): figures
            for key, figures in sample.figures.items()
        }
        for key, traceback in biggest.items():
            seen = latest.get(key)
            if seen is None or sample.timestamp >= seen[0]:
                latest[canonical[key]] = (sample.timestamp, traceback)
        samples.append(sample)
        pid = raw.pid or pid
        lost_blocks = max(lost_blocks, raw.lost_blocks)
    samples.sort(key=lambda sample: sample.timestamp)
    tracebacks = {key: traceback for key, (_, traceback) in latest.items()}
    return SeriesSuspects(
        suspects=find_suspects(samples, tracebacks, rule),
        samples=len(samples),
        first_timestamp=samples[0].timestamp if samples else 0.0,
        last_timestamp=samples[-1].timestamp if samples else 0.0,
        pid=pid,
        estimated=any(sample.estimated for sample in samples),
        lost_blocks=lost_blocks,
    )


def suspects_in(
    snapshots: Iterable[RawSnapshot],
    key_type: str = "userline",
    rule: GrowthRule = DEFAULT_RULE,
) -> List[Suspect]:
    """Suspects in a timeline of raw snapshots (a file the watcher wrote)."""
    return analyse_series(snapshots, key_type, rule).suspects


def taken_up(
    held: Mapping[Key, Any],
    kept: Sequence[Key],
    known: Mapping[Key, Any],
    max_keys: int,
    size_of: Callable[[Key], int],
) -> Tuple[List[Key], List[Key]]:
    """What a sample of a bounded series takes up when the next one keeps
    keys (*kept*) that it does not hold (*held*), so that their series do
    not start with a hole, which reads as growth: those keys (the ones in
    *known*, every key's figures at the sample), and the keys it lets go
    to stay within *max_keys*: keys the next sample dropped, the smallest
    (by *size_of*) first.  They are at most as many as those it takes up,
    both samples holding *max_keys* when the cap bites."""
    missing = [key for key in kept if key not in held and key in known]
    excess = len(held) + len(missing) - max_keys
    if not missing or excess <= 0:
        return missing, []
    still = set(kept)
    dropped = sorted((key for key in held if key not in still), key=size_of)
    return missing, dropped[:excess]


def select_keys(
    figures: Mapping[Key, Tuple[int, int, int]],
    before: Mapping[Key, Tuple[int, int, int]],
    kept_before: Mapping[Key, Any],
    max_keys: int,
) -> List[Key]:
    """The keys of a sample that a bounded series keeps: at most *max_keys*
    of *figures* (key -> ``(size, count, floor)``, as in `Sample`), the
    keys that grow first, then the biggest.

    Keeping only the biggest lost leaks: a line that leaks 18 KB a second
    beside 600 lines of 20 KB of tables never made the 500 biggest, so it
    was never judged.  A leak is a key that grows, whatever its size, so up
    to half the keys (rounded up) are those that grew since the sample
    before: *before* holds every key's figures then (not only the kept
    ones; a key missing there had no block).  A key grew when its size or
    its floor rose: a leak under the noise of batches in flight at the
    samples raises its floor when its size does not.  (Not from a floor of
    0, which covers a time before the key's first block: a key that
    appeared rose by its size already, and its next floor, that same
    size, is no more growth.)  Those kept in the
    sample before (the keys of *kept_before*) come first, so that a leak,
    once kept, is never pushed out by keys that grew more this once (a
    hole in its series reads as memory given back and gained again), and
    then the others, those that grew most first.  The biggest fill the
    rest; what is still left goes to keys kept before that did not shrink
    (a leak that grows in bursts, between two of them), then to the next
    biggest.  When the cap is not reached, every key is kept, in order.
    """
    if len(figures) <= max_keys:
        return list(figures)
    absent = (0, 0, 0)
    growing: List[Tuple[int, Key]] = []  # kept before, and grew
    new: List[Tuple[int, Key]] = []  # grew, not kept before
    steady: List[Key] = []  # kept before, neither measure shrank
    for key, (size, _count, floor) in figures.items():
        was = before.get(key, absent)
        grown = size - was[0]
        if was[2] > 0 and floor - was[2] > grown:
            grown = floor - was[2]
        if grown > 0:
            (growing if key in kept_before else new).append((grown, key))
        elif grown == 0 and key in kept_before:
            steady.append(key)
    slots = (max_keys + 1) // 2
    by_growth = operator.itemgetter(0)
    growing.sort(key=by_growth, reverse=True)  # at most max_keys
    chosen = [key for _, key in growing[:slots]]
    if len(chosen) < slots:
        # Often many (every key is new in a first sample): no full sort.
        best = heapq.nlargest(slots - len(chosen), new, key=by_growth)
        chosen += [key for _, key in best]
    taken = set(chosen)
    rest = (key for key in figures if key not in taken)
    biggest = heapq.nlargest(max_keys // 2, rest, key=lambda key: figures[key][0])
    chosen += biggest
    taken.update(biggest)
    room = max_keys - len(chosen)
    if room > 0:
        # Growth slots left over: the steady keys kept before, the biggest
        # first, then the next biggest of all.
        steady = [key for key in steady if key not in taken]
        steady.sort(key=lambda key: figures[key][0], reverse=True)
        chosen += steady[:room]
        taken.update(steady[:room])
        room = max_keys - len(chosen)
        if room > 0:
            rest = (key for key in figures if key not in taken)
            chosen += heapq.nlargest(room, rest, key=lambda key: figures[key][0])
    return chosen
