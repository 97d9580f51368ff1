"""LeakWatcher: aggregated snapshots over time, and the sites that keep growing.

The watcher takes an aggregated snapshot every *interval* seconds on a
background thread (or when asked, with `LeakWatcher.sample`), keeps a
bounded series of them, and ranks call sites by sustained growth
(`pyleakhunt.growth`).  Its memory stays bounded however long it runs: each
sample keeps at most *max_sites* keys, and when the series is full it is
thinned to three quarters, evenly over the whole run, so the window always
spans the whole run at a coarser grain.  The keys kept are, for up to half
of them, those that grew since the sample before, whatever their size (a key that keeps
growing keeps its place, so its series has no hole), and the biggest for
the rest (`pyleakhunt.growth.select_keys`): a small leak beside more than
*max_sites* bigger sites is still judged.  To see what grew, the watcher
also holds every key's figures at the last sample (one sample's worth).
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from typing import Dict, List, Optional, Tuple, Union

import pyleakhunt

from . import _core, lease, sampler, userframe
from .fileformat import TimelineWriter
from .growth import (
    CLOSING_ATTR,
    DEFAULT_RULE,
    GrowthRule,
    Sample,
    Suspect,
    drop_folding,
    find_suspects,
    fold_floors,
    reduce_snapshot,
    select_keys,
    taken_up,
    thin_evenly,
)
from .lease import Lease
from .snapshot import KEY_TYPES, Snapshot, Traceback

#: The entry attribute holding the process's resident set size, in bytes
#: (what ``pyleakhunt report`` plots beside the traced memory).
RSS_ATTR = "rss_bytes"


class LeakWatcher:
    """Watch a process for call sites whose live memory keeps growing.

    ``LeakWatcher(interval=1.0, key_type='userline')``; use `start` / `stop`
    (or ``with``) for a background thread, or call `sample` yourself.  The
    watcher holds a lease on the tracer (`pyleakhunt.lease`) with *nframe*
    frames until it stops: it starts the tracer if it is off and stops it
    again if nothing else holds one.  With *path*, every sample is also
    appended to a timeline file that ``pyleakhunt suspects`` reads.

    *key_type* is one of `pyleakhunt.snapshot.KEY_TYPES`; the default,
    ``'userline'``, judges growth per line of the program's own code, so
    that what json, logging or an ORM allocate for a line counts under it
    (`pyleakhunt.userframe`).  The default *nframe* reaches that line
    through a few library frames.

    With *fresh_objects* (the default), on Python 3.10 to 3.12 CPython's
    free lists of dicts, lists, tuples and floats are kept empty while the
    watcher traces, so that such an object is counted at the line that made
    it, not where the dead object whose memory it reuses was made (3.13+
    sees that reuse itself, and only dicts' key tables, which are no
    objects, are kept out of their free list).  Each of these objects then
    costs an allocation; production tracing turns it off.
    """

    def __init__(
        self,
        interval: float = 1.0,
        key_type: str = "userline",
        *,
        nframe: int = 10,
        max_samples: int = 120,
        max_sites: int = 500,
        path: Union[str, os.PathLike, None] = None,
        rule: GrowthRule = DEFAULT_RULE,
        fresh_objects: bool = True,
    ) -> None:
        if key_type not in KEY_TYPES:
            raise ValueError(f"unknown key_type: {key_type!r}")
        if not 0 < interval < math.inf:
            raise ValueError(f"interval must be a finite number > 0, not {interval!r}")
        if max_samples < 4:
            raise ValueError("max_samples must be at least 4")
        self.interval = interval
        self.key_type = key_type
        self.nframe = nframe
        self.max_samples = max_samples
        self.max_sites = max_sites
        self.rule = rule
        self.fresh_objects = fresh_objects
        self._samples: List[Sample] = []
        #: Every key's figures at the last sample, kept or not: what the
        #: next one compares with to see which keys grew.
        self._before: Dict[Traceback, Tuple[int, int, int]] = {}
        self._tracebacks: Dict[Traceback, Traceback] = {}
        self._lock = threading.Lock()
        #: From start to stop, even after an error ended the sampling.
        self._running = False
        #: While stop() takes the closing sample.
        self._closing = False
        self._registration: Optional[sampler.Registration] = None
        self._lease: Optional[Lease] = None
        self._writer = TimelineWriter(path) if path is not None else None
        self.error: Optional[BaseException] = None

    # -- sampling -----------------------------------------------------------

    def _ensure_tracing(self) -> None:
        if self._lease is None or not pyleakhunt.is_tracing():
            if self._lease is not None:
                self._lease.release()
            self._lease = lease.acquire(
                self.nframe,
                owner="LeakWatcher",
                empty_free_lists=True,
                fresh_objects=self.fresh_objects,
            )

    def sample(self) -> Snapshot:
        """Take one aggregated snapshot now and add it to the series.

        The snapshot's ``raw.attrs["rss_bytes"]`` holds the process's
        resident set size at that moment (where the system reports it), so
        that a timeline shows the memory outside the tracer's view too.
        """
        self._ensure_tracing()
        snapshot = pyleakhunt.take_snapshot(traces=False)
        # Read in C, the GIL held (`pyleakhunt.process.proc.rss_bytes` reads
        # the same file): Python's file calls give the GIL up eight
        # times, and behind a busy main thread each costs the sampling
        # thread up to the switch interval to get it back.
        rss = _core.rss_bytes()
        if rss is not None:
            snapshot.raw.attrs[RSS_ATTR] = rss
        if self._closing:  # stop()'s (`pyleakhunt.growth.CLOSING_ATTR`)
            snapshot.raw.attrs[CLOSING_ATTR] = True
        sample, biggest = reduce_snapshot(snapshot, self.key_type)
        with self._lock:
            self._add(sample, biggest)
            if len(self._samples) > self.max_samples:
                self._thin()
            if self._writer is not None:
                self._writer.append(snapshot.raw)
        return snapshot

    def _add(self, sample: Sample, tracebacks: Dict[Traceback, Traceback]) -> None:
        """Add *sample*, of every key, to the series: at most *max_sites* of
        its keys, the growing ones first (`pyleakhunt.growth.select_keys`).

        The sample before then also gets its figures of the keys this one
        begins to keep, so that a key's series starts where the key was,
        not from nothing: a line that held 1 MB and began to grow 10 KB a
        sample would otherwise show a first step of 1 MB, and look like a
        plateau after it.
        """
        figures = sample.figures
        before, self._before = self._before, figures
        previous = self._samples[-1] if self._samples else None
        kept = select_keys(
            figures,
            before,
            previous.figures if previous is not None else {},
            self.max_sites,
        )
        if len(kept) < len(figures):
            sample = dataclasses.replace(
                sample, figures={key: figures[key] for key in kept}
            )
        if previous is not None:
            self._samples[-1] = _taking_up(previous, kept, before, self.max_sites)
        self._samples.append(sample)
        self._tracebacks.update((key, tracebacks[key]) for key in kept)

    def _thin(self) -> None:
        """Thin the series to three quarters of *max_samples*, evenly over
        the whole run (`pyleakhunt.growth.thin_evenly`); forget keys no
        sample has.

        A sample's floors cover the time since the sample before it, so the
        sample after one left out takes that one's floors too (the lower of
        the two, per key)."""
        times = [sample.timestamp for sample in self._samples]
        kept = thin_evenly(times, max(4, 3 * self.max_samples // 4))
        self._samples = _drop_samples(self._samples, kept)
        alive = set()
        for sample in self._samples:
            alive.update(sample.figures)
        self._tracebacks = {k: v for k, v in self._tracebacks.items() if k in alive}

    @property
    def samples(self) -> List[Sample]:
        """The series kept so far, oldest first (a copy)."""
        with self._lock:
            return list(self._samples)

    # -- the background thread ---------------------------------------------

    def start(self) -> LeakWatcher:
        """Take a first sample now, then one every *interval* seconds on a
        daemon thread (the process's one sampling thread, `pyleakhunt.sampler`).

        The first is taken here so that a watcher stopped at once still has
        it, as it had when the watcher's own thread began with it.
        """
        if self._running:
            raise RuntimeError("this LeakWatcher is already running")
        self._ensure_tracing()
        userframe.prepare()  # here, not in the sampling thread
        self._running = True
        if self._sample_or_give_up():  # else stopped by its error
            self._registration = sampler.register(
                "watcher", self._sample_or_give_up, self.interval
            )
        return self

    def _sample_or_give_up(self) -> bool:
        """One sample; False, keeping the error, if it failed (no more then)."""
        try:
            self.sample()
        except Exception as exc:  # never let the watcher hurt the program
            self.error = exc
            return False
        return True

    def stop(self, final_sample: bool = True, closing: bool = True) -> None:
        """Stop sampling (taking one last sample) and close the timeline.

        With *closing*, the last sample is the series' closing one, taken
        once the code watched has ended: a line that grew until then and
        that it finds freed (the end let go of it, as a function's locals)
        is still a suspect, marked ``freed_at_exit``.  Pass False when the
        program goes on (a watch of a running process that ends)."""
        registration, self._registration = self._registration, None
        if registration is not None:
            registration.cancel()  # waits for a sample being taken
        if self._running:
            self._running = False
            if final_sample and self.error is None and pyleakhunt.is_tracing():
                self._closing = closing
                try:
                    self.sample()
                finally:
                    self._closing = False
        if self._writer is not None:
            self._writer.close()
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    def __enter__(self) -> LeakWatcher:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- results ------------------------------------------------------------

    def suspects(self, n: Optional[int] = None) -> List[Suspect]:
        """Call sites whose live memory keeps growing, best first."""
        with self._lock:
            samples = list(self._samples)
            tracebacks = dict(self._tracebacks)
        found = find_suspects(samples, tracebacks, self.rule)
        return found if n is None else found[:n]


def _drop_samples(samples: List[Sample], kept: List[bool]) -> List[Sample]:
    """The *samples* that *kept* marks, each with the floors of those left
    out just before it folded into its own."""
    return drop_folding(samples, kept, _folded)


def _folded(sample: Sample, before: Sample) -> Sample:
    """*sample*, its floors also covering the interval of *before*."""
    floors = fold_floors(
        {key: low for key, (_, _, low) in sample.figures.items()},
        {key: low for key, (_, _, low) in before.figures.items()},
    )
    figures = {
        key: (size, count, floors[key])
        for key, (size, count, _low) in sample.figures.items()
    }
    return dataclasses.replace(sample, figures=figures)


def _taking_up(
    sample: Sample,
    kept: List[Traceback],
    before: Dict[Traceback, Tuple[int, int, int]],
    max_keys: int,
) -> Sample:
    """*sample*, with its figures (from *before*, every key's at that
    sample) of the keys the next sample keeps and it did not
    (`growth.taken_up`)."""
    figures = sample.figures
    missing, let_go = taken_up(
        figures, kept, before, max_keys, lambda key: figures[key][0]
    )
    if not missing:
        return sample
    taken = dict(figures)
    taken.update((key, before[key]) for key in missing)
    for key in let_go:
        del taken[key]
    return dataclasses.replace(sample, figures=taken)
