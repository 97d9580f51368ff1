"""Per-request attribution: which endpoint holds the memory that stays.

The endpoint registry and the verdict, shared by the WSGI, Flask and ASGI
integrations: they only decide *which endpoint* a request is and when it
starts and ends.

**Tags.**  While a request for endpoint E is served, `TAG_VAR` holds E's
number (its *tag*), and the core records every allocation in a site tagged
with it (``_core.set_tag_var``).  A block keeps its site for as long as it
lives, so memory allocated while serving E and still alive later stays
attributed to E, whichever thread or task frees it or keeps it.  A context
variable, not a thread-local, because ASGI servers interleave requests on
one thread as asyncio tasks.  The core reads one variable for the whole
process, so there is one registry per process: `shared()`.

**The registry** maps endpoint names to tags and counts the requests each
has served.  Its size is capped (``max_endpoints``): names beyond the cap
share the tag of ``<other>``, so a client that invents paths cannot grow
it.  Tag numbers are never reused within a process, even across `reset()`,
so memory tagged before a reset is never credited to a new endpoint.

**Sampling.**  Every ``interval`` seconds the process's sampling thread
(`pyleakhunt.sampler`, shared with the watcher) takes an
aggregated snapshot (its cost follows the number of call sites, not of
live blocks) and reduces it, per tag, to the endpoint's retained bytes and
at most ``max_sites`` of its call sites (``file:line`` of the most recent
frame): up to half of them the lines that grew since the sample before,
whatever their size (a line that keeps growing keeps its place), the
biggest for the rest (`pyleakhunt.growth.select_keys`), so that a small
leaking line beside bigger ones is still named.  Each
endpoint keeps a bounded series of points ``(requests served, retained
bytes, sites)``: at most ``max_points``; when full, it is thinned to
three quarters, evenly over the requests served (as
`pyleakhunt.watcher.LeakWatcher` does over time), so the series always
spans the whole run.  Memory: at most
``max_endpoints x max_points x max_sites`` numbers, and each endpoint's
lines at the last sample (to see which grew).

**Against requests, not time.**  A point is added only when the endpoint
has served requests since the previous one (otherwise the last point is
updated in place), and the series is judged with *requests served* on the
x-axis.  A leak that costs B bytes per request is then a straight line of
slope B, whatever the traffic does: a quiet night does not look like a
plateau, and a burst does not look like acceleration.  With time on the
x-axis, an endpoint that leaks but stopped receiving traffic would look
like a cache that stopped growing.  The slope (least squares of retained
bytes against requests) is the endpoint's ``bytes_per_request``.

**The verdict** is the project's one sustained-growth rule,
`pyleakhunt.growth.GrowthRule.judge`, applied to that series: net growth,
still growing in the second half (a bounded cache that filled and stopped
fails this), growth kept rather than given back (churn fails this), and
growth in most intervals.  The same rule judges each call site of the
endpoint, to point at the line that leaks.  One threshold is specific to
requests: the net growth, and the least-squares slope, must both come to
at least ``min_bytes_per_request`` per request served over the window
(default 8 bytes).  A busy process shows a few bytes per request of drift
that is no leak: on every version (seen on 3.10 to 3.14), objects kept on
CPython's free lists
(dicts, lists, tuples, floats) keep the tag and the line of their block's
first allocation, so long-lived objects made anywhere can be credited, a
few bytes at a time, to whichever endpoint first allocated their block.
"""

from __future__ import annotations

import contextvars
import gc
import itertools
import math
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import pyleakhunt

from .. import _core, growth, lease, sampler, userframe
from .._core import rss_bytes  # read without giving the GIL up (watcher.py)
from .._raw import RawFrame, RawFrames, RawSnapshot
from ..growth import DEFAULT_RULE, TRACER_FILES, GrowthRule
from ..lease import Lease

__all__ = [
    "OTHER",
    "OWN_FILES",
    "TAG_VAR",
    "Attribution",
    "AttributionReport",
    "EndpointRegistry",
    "EndpointReport",
    "Options",
    "SiteReport",
    "current",
    "on_first_request_after_fork",
    "reset",
    "rss_bytes",
    "shared",
    "untag",
]

#: The endpoint tag of the request being served (0: none).  The one
#: variable registered with the core, shared by every integration.
TAG_VAR: contextvars.ContextVar[int] = contextvars.ContextVar(
    "pyleakhunt_endpoint", default=0
)


def untag(token: contextvars.Token[int]) -> None:
    """Undo ``TAG_VAR.set()``, as ``TAG_VAR.reset(token)`` does, except
    that a variable that had no value is set to 0 rather than emptied.

    Both mean "no tag".  But the core reads the variable on every
    allocation, from its cache when it has a value; an emptied variable has
    no cache and costs a lookup in the context each time.
    """
    if token.old_value is contextvars.Token.MISSING:
        TAG_VAR.set(0)
    else:
        TAG_VAR.reset(token)


#: The endpoint that names beyond ``max_endpoints`` share.
OTHER = "<other>"

#: Tag numbers of the process: never reused, even across `reset()`.
_tag_numbers = itertools.count(1)

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
#: Memory whose most recent frame is in the hunter itself is not the
#: program's (the integrations set the tag from these files).
OWN_FILES = TRACER_FILES | frozenset(
    os.path.join(_PACKAGE_DIR, name)
    for name in ("attribution.py", "core.py", "wsgi.py", "flask.py", "asgi.py")
)
_UNKNOWN_FRAME: RawFrame = ("<unknown>", 0)


@dataclass(frozen=True)
class Options:
    """How attribution traces and samples (shared by the whole process)."""

    #: Frames kept per traceback when the tracer is started here.  One is
    #: enough to name the line; more show its callers, at some cost.
    nframe: int = 1
    #: Seconds between samples taken by the background thread.
    interval: float = 2.0
    #: Sampled tracing (see `pyleakhunt.start`); None traces everything.
    sample_bytes: Union[int, str, None] = None
    #: Distinct endpoints before new names go to ``<other>``.
    max_endpoints: int = 100
    #: Call sites kept per endpoint and sample: up to half of them (rounded
    #: up) those that grew since the sample before, the biggest for the rest.
    max_sites: int = 10
    #: Points kept per endpoint (thinned evenly when full).
    max_points: int = 48
    #: The sustained-growth thresholds.
    rule: GrowthRule = DEFAULT_RULE
    #: Least net growth, per request served over the window, to call an
    #: endpoint or a call site leaking (slow drift below it is noise).
    min_bytes_per_request: float = 8.0
    #: Run a full garbage collection before each sample.  It empties
    #: CPython's free lists, whose dead objects otherwise count, a few
    #: bytes a request, against the endpoint that allocated their blocks
    #: (see above), and it frees unreachable cycles.  It costs one full
    #: collection a sample, tens of milliseconds in a large process.
    #: None (the default) collects while a collection is expected to take
    #: at most 1% of ``interval`` (`_CollectionBudget`), and not while the
    #: program has turned the collector off: in tests, staging and small
    #: services, where a short run's drift can reach the floor; not in a
    #: large process.
    collect: Optional[bool] = None
    #: On 3.10 to 3.12, keep CPython's free lists of dicts, lists, tuples
    #: and floats empty, so that each such object is allocated at its own
    #: endpoint and line; without it, one made in the memory of a dead one
    #: is counted where that one was made.  On 3.10 the dead frame each
    #: code object keeps for its next call goes to the free list of
    #: frames, which a collection empties.  About 9% more CPU per request
    #: on 3.11 (a small Flask app).  3.13+ sees objects reused and moves
    #: them, but not a dict's key table, whose free list this turns off
    #: there: some 0.4% more instructions a Flask request on 3.14.  None
    #: (the default) is on: off, an endpoint that keeps a small dict or
    #: tuple a request is not named on 3.10 to 3.12, and the endpoint
    #: beside it that throws such objects away is called LEAKING.
    fresh_objects: Optional[bool] = None

    def __post_init__(self) -> None:
        if not isinstance(self.nframe, int) or not 1 <= self.nframe <= 65535:
            raise ValueError(f"nframe must be an int from 1 to 65535: {self.nframe!r}")
        if self.collect is not None and not isinstance(self.collect, bool):
            raise ValueError(f"collect must be True, False or None: {self.collect!r}")
        fresh = self.fresh_objects
        if fresh is not None and not isinstance(fresh, bool):
            raise ValueError(f"fresh_objects must be True, False or None: {fresh!r}")
        if not 0 < self.interval < math.inf:
            raise ValueError(
                f"interval must be a finite number > 0 seconds: {self.interval!r}"
            )
        if self.max_endpoints < 1:
            raise ValueError("max_endpoints must be at least 1")
        if self.max_sites < 1:
            raise ValueError("max_sites must be at least 1")
        if self.max_points < max(4, self.rule.min_samples):
            raise ValueError("max_points must be at least 4 and rule.min_samples")

    def wants_fresh_objects(self) -> bool:
        """*fresh_objects*, None resolved: on, on every version."""
        return self.fresh_objects is not False


# --------------------------------------------------------------------------
# The registry: endpoint names, tags, request counters


class EndpointRegistry:
    """Endpoint name <-> tag, and the requests each endpoint has served.

    Thread-safe.  At most ``max_endpoints`` names get a tag of their own;
    the others share ``<other>``'s.
    """

    def __init__(self, max_endpoints: int) -> None:
        self.max_endpoints = max_endpoints
        # Guards additions; counting takes no lock (see enter).
        self._lock = threading.Lock()
        self._entries: Dict[str, Tuple[int, Iterator[int]]] = {}
        self._names: Dict[int, str] = {}
        self._counters: Dict[int, Iterator[int]] = {}

    def enter(self, name: str) -> int:
        """Count one request for *name*; return its tag.

        Called on every request, so it takes no lock: each endpoint counts
        with an ``itertools.count``, whose ``next()`` is a single C call and
        so atomic under the GIL (``+=`` on an int could lose counts when
        threads interleave).
        """
        entry = self._entries.get(name)
        if entry is None:
            entry = self._add(name)
        next(entry[1])
        return entry[0]

    def _add(self, name: str) -> Tuple[int, Iterator[int]]:
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None:  # another thread added it meanwhile
                return entry
            if len(self._entries) >= self.max_endpoints and name != OTHER:
                other = self._entries.get(OTHER)
                if other is not None:
                    return other  # not remembered: the names stay bounded
                name = OTHER
            tag = next(_tag_numbers)
            entry = (tag, itertools.count())
            self._names[tag] = name
            self._counters[tag] = entry[1]
            self._entries[name] = entry  # last: readers see a complete entry
            return entry

    def names(self) -> Dict[int, str]:
        """Tag -> endpoint name (a copy)."""
        with self._lock:
            return dict(self._names)

    def requests(self) -> Dict[int, int]:
        """Tag -> requests served so far."""
        with self._lock:
            counters = list(self._counters.items())
        return {tag: _count_value(counter) for tag, counter in counters}

    def after_fork(self) -> None:
        # Another thread may have held the lock when the process forked.
        self._lock = threading.Lock()


def _count_value(counter: Iterator[int]) -> int:
    """The next value of an ``itertools.count``, without advancing it.

    Its repr, ``count(N)``, is the one way that is not deprecated (pickling
    support, ``__reduce__``, is, since Python 3.12).
    """
    return int(repr(counter)[6:-1])


# --------------------------------------------------------------------------
# Series of points per endpoint


@dataclass
class _Point:
    """One sample of one endpoint."""

    requests: int
    retained: int
    #: (filename, lineno) -> live bytes, for the biggest sites only.
    sites: Dict[RawFrame, int]
    #: The endpoint's floor: its lowest retained bytes since the sample
    #: before (its sites' low-water marks, summed), which the requests in
    #: flight at a sample do not raise (`pyleakhunt.growth`); and the
    #: floors of the lines in *sites*.
    floor: int = 0
    site_floors: Dict[RawFrame, int] = field(default_factory=dict)

    def folded(self, before: _Point) -> _Point:
        """This point, its floors also covering *before*'s interval (a
        point left out just before it)."""
        return replace(
            self,
            floor=min(self.floor, before.floor),
            site_floors=growth.fold_floors(self.site_floors, before.site_floors),
        )

    def taking_up(
        self,
        kept: List[RawFrame],
        figures: Dict[RawFrame, Tuple[int, int, int]],
        max_sites: int,
    ) -> _Point:
        """This point, with its *figures* (every line's at its sample) of
        the lines the next point keeps and it did not
        (`growth.taken_up`)."""
        missing, let_go = growth.taken_up(
            self.sites, kept, figures, max_sites, self.sites.__getitem__
        )
        if not missing:
            return self
        sites = dict(self.sites)
        site_floors = dict(self.site_floors)
        for line in missing:
            sites[line] = figures[line][0]
            site_floors[line] = figures[line][2]
        for line in let_go:
            del sites[line]
            site_floors.pop(line, None)
        return replace(self, sites=sites, site_floors=site_floors)


@dataclass
class _Series:
    """The bounded history of one endpoint, and its latest details."""

    points: List[_Point] = field(default_factory=list)
    #: Latest counts and tracebacks of the sites in the last point.
    counts: Dict[RawFrame, int] = field(default_factory=dict)
    tracebacks: Dict[RawFrame, RawFrames] = field(default_factory=dict)
    #: Every line's (size, count, floor) at the last sample, kept or not:
    #: what the next sample compares with to see which lines grew.
    lines: Dict[RawFrame, Tuple[int, int, int]] = field(default_factory=dict)

    def add(self, point: _Point, max_points: int, counts: Dict[RawFrame, int]) -> None:
        if point.requests == 0:
            return  # never served: nothing to say yet
        if self.points and self.points[-1].requests == point.requests:
            # No new request: refresh the last point.
            self.points[-1] = point.folded(self.points[-1])
        else:
            self.points.append(point)
            if len(self.points) > max_points:
                self._thin()
        self.counts = counts

    def keep(
        self,
        served: int,
        retained: int,
        figures: Dict[RawFrame, Tuple[int, int, int]],
        max_sites: int,
    ) -> Tuple[_Point, List[RawFrame]]:
        """The point of a new sample, of its lines *figures* (every line's
        ``(size, count, floor)``), and the lines it keeps: at most
        *max_sites*, those that grow first (`growth.select_keys`).

        When the point is to follow the last one (requests were served in
        between), the last one also gets its figures of the lines this one
        begins to keep, so that a line's series starts where the line was,
        not from nothing (a line holding 1 MB that begins to grow would
        otherwise show a first step of 1 MB, and look like a plateau).
        """
        before, self.lines = self.lines, figures
        last = self.points[-1] if self.points else None
        kept = growth.select_keys(
            figures, before, last.sites if last is not None else {}, max_sites
        )
        point = _Point(
            served,
            retained,
            {line: figures[line][0] for line in kept},
            sum(low for _size, _count, low in figures.values()),
            {line: figures[line][2] for line in kept},
        )
        if last is not None and served and served != last.requests:
            self.points[-1] = last.taking_up(kept, before, max_sites)
        return point, kept

    def _thin(self) -> None:
        """Thin the points to three quarters, evenly over the requests
        served (`growth.thin_evenly`), each kept one taking the floors of
        those left out just before it."""
        points = self.points
        requests = [float(point.requests) for point in points]
        kept = growth.thin_evenly(requests, max(4, 3 * len(points) // 4))
        self.points = growth.drop_folding(points, kept, _Point.folded)


# --------------------------------------------------------------------------
# What a report says


@dataclass(frozen=True)
class SiteReport:
    """A call site of an endpoint's retained memory."""

    filename: str
    lineno: int
    #: Live bytes and blocks now.
    size: int
    count: int
    #: Least-squares slope of this site's bytes against requests served.
    bytes_per_request: Optional[float]
    #: Whether this site grows by the sustained-growth rule.
    leaking: bool
    #: Frames of the biggest site at this line, most recent call first.
    traceback: RawFrames

    @property
    def via(self) -> Optional[RawFrame]:
        """The library frame that allocated, when it is not this line."""
        top = self.traceback[0] if self.traceback else None
        return None if top is None or top == (self.filename, self.lineno) else top

    def to_json(self) -> Dict[str, Any]:
        via = self.via
        return {
            "filename": self.filename,
            "lineno": self.lineno,
            "via": None if via is None else [via[0], via[1]],
            "size": self.size,
            "count": self.count,
            "bytes_per_request": _rounded(self.bytes_per_request),
            "leaking": self.leaking,
            "traceback": [[name, line] for name, line in self.traceback],
        }


@dataclass(frozen=True)
class EndpointReport:
    """What one endpoint retains, and whether it leaks."""

    endpoint: str
    requests: int
    retained_bytes: int
    bytes_per_request: Optional[float]
    leaking: bool
    #: ``"leaking"``, ``"not leaking"`` or ``"too early"`` (fewer points
    #: than the rule needs).
    verdict: str
    #: Points in the series the verdict was drawn from.
    samples: int
    #: Fraction of intervals in which the endpoint grew (leaking only).
    consistency: Optional[float]
    estimated: bool
    sites: List[SiteReport]
    #: The series the verdict was drawn from: (requests served, retained
    #: bytes), the oldest first.
    points: Tuple[Tuple[int, int], ...] = ()

    def to_json(self) -> Dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "requests": self.requests,
            "retained_bytes": self.retained_bytes,
            "bytes_per_request": _rounded(self.bytes_per_request),
            "leaking": self.leaking,
            "verdict": self.verdict,
            "samples": self.samples,
            "consistency": self.consistency,
            "estimated": self.estimated,
            "sites": [site.to_json() for site in self.sites],
            "points": [list(point) for point in self.points],
        }


@dataclass(frozen=True)
class AttributionReport:
    """Every endpoint's figures at one moment, the leaking ones first."""

    timestamp: float
    tracing: bool
    estimated: bool
    sample_bytes: int
    interval: float
    #: Samples taken since attribution started.
    samples: int
    #: Bytes traced in all (None when not tracing).
    traced_bytes: Optional[int]
    #: The process's resident set size (None where unknown).
    rss_bytes: Optional[int]
    #: Traced bytes allocated outside any request (start-up, other threads).
    untagged_bytes: int
    endpoints: List[EndpointReport]
    #: Why the last sample failed, if it did.
    error: Optional[str] = None

    @property
    def leaking(self) -> List[EndpointReport]:
        """The endpoints judged leaking, the fastest first."""
        return [e for e in self.endpoints if e.leaking]

    def to_json(self) -> Dict[str, Any]:
        """The document of ``<prefix>/api`` (see docs/tutorial.md)."""
        return {
            "pyleakhunt": pyleakhunt.__version__,
            "timestamp": self.timestamp,
            "tracing": self.tracing,
            "estimated": self.estimated,
            "sample_bytes": self.sample_bytes,
            "interval_s": self.interval,
            "x_axis": "requests",
            "samples": self.samples,
            "traced_bytes": self.traced_bytes,
            "rss_bytes": self.rss_bytes,
            "untagged_bytes": self.untagged_bytes,
            "error": self.error,
            "endpoints": [endpoint.to_json() for endpoint in self.endpoints],
        }


def _rounded(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(value, 1)


# --------------------------------------------------------------------------
# The per-process state


class _UserFrames:
    """The tracer's user-frame rule, on while any attribution runs."""

    lock = threading.Lock()
    users = 0

    @classmethod
    def need(cls) -> None:
        with cls.lock:
            if cls.users == 0:
                _core.set_user_frames(*userframe.tracer_rule())
            cls.users += 1

    @classmethod
    def release(cls) -> None:
        with cls.lock:
            cls.users -= 1
            if cls.users == 0:
                _core.set_user_frames(None)


class _CollectionBudget:
    """Whether `Options.collect`'s automatic collection is cheap enough now.

    A full collection's time grows with the objects the collector tracks.
    The allocator's count of live blocks (`sys.getallocatedblocks`, which
    counts untracked objects too, so it overestimates) costs well under a
    millisecond even for millions of blocks, and is multiplied by the time
    per block the last collection made here took, or by a cautious guess
    before the first.  Without pymalloc (``PYTHONMALLOC=malloc``, as under
    a sanitizer) that count is 0, and the resident memory stands in for
    it, a block per `BYTES_PER_BLOCK`.  The measures are kept as ints: on
    3.10 to 3.12 a float kept here could be made in the block of a dead
    one from CPython's free list, and be counted at that one's endpoint.
    """

    #: The share of the sampling interval a collection may take.
    SHARE = 0.01
    #: Nanoseconds per live block assumed before a collection was timed:
    #: twice the slowest measured (3.14: 25 ns a block, 3.10 to 3.13: 6 ns,
    #: with a million small dicts).
    GUESS_NS = 50
    #: Resident bytes counted as one block where the allocator counts
    #: none: a small object's share, so that the count errs high.
    BYTES_PER_BLOCK = 64

    def __init__(self) -> None:
        self.spent_ns = self.GUESS_NS  # the last collection's time ...
        self.blocks = 1  # ... and the live blocks it had to go through

    @classmethod
    def live_blocks(cls) -> Optional[int]:
        """The process's live blocks, or None if it cannot tell."""
        blocks = sys.getallocatedblocks()
        if blocks > 0:
            return blocks
        rss = rss_bytes()
        return None if rss is None else max(rss // cls.BYTES_PER_BLOCK, 1)

    def allows(self, interval: float) -> bool:
        """Whether to collect before a sample taken every *interval* s."""
        if not gc.isenabled():
            return False  # the program chose when it collects
        blocks = self.live_blocks()
        if blocks is None:
            return False
        expected_ns = blocks * self.spent_ns / self.blocks
        return expected_ns <= self.SHARE * interval * 1e9

    def collect(self) -> None:
        """Collect, and learn what a collection costs per block."""
        blocks = self.live_blocks() or 1
        started = time.perf_counter_ns()
        gc.collect()
        self.spent_ns = time.perf_counter_ns() - started
        self.blocks = blocks


class Attribution:
    """The registry, the sampler and the series of one process.

    Use `shared()` rather than this constructor: the core reads a single
    tag variable, so there must be a single registry.
    """

    def __init__(self, options: Options) -> None:
        self.options = options
        self.registry = EndpointRegistry(options.max_endpoints)
        self._series: Dict[int, _Series] = {}
        self._untagged_bytes = 0
        self._estimated = False
        self._sample_bytes = 0
        self._samples = 0
        self._last_sample = 0.0
        self._error: Optional[str] = None
        self._collection = _CollectionBudget()
        # _sample_lock serialises sampling (background thread, report
        # requests); _lock guards the series while a report reads them.
        self._sample_lock = threading.Lock()
        self._lock = threading.Lock()
        self._registration: Optional[sampler.Registration] = None
        self._lease: Optional[Lease] = None
        self._running = False
        #: Set in a forked child: the sampler thread did not survive.
        self._sampler_lost = False

    # -- life cycle ---------------------------------------------------------

    def start(self) -> Attribution:
        """Register the tag variable, start tracing, start the sampler."""
        _core.set_tag_var(TAG_VAR)
        if self._lease is None:
            # One frame is recorded; when it is a library's, the tracer
            # adds the user's line below it, the one reports show first.
            _UserFrames.need()
            # Reports name lines, never the depth below them: not counting
            # it saves a walk of the server's whole stack per allocation.
            self._lease = lease.acquire(
                self.options.nframe,
                sample_bytes=self.options.sample_bytes,
                total_nframe=False,
                owner="attribution",
                empty_free_lists=True,
                fresh_objects=self.options.wants_fresh_objects(),
            )
        self._running = True
        if self._registration is None:
            self._start_sampler()
        return self

    def _start_sampler(self) -> None:
        """Sample every interval on the process's sampling thread."""
        userframe.prepare()  # here, not in the sampling thread
        self._sampler_lost = False
        self._registration = sampler.register(
            "attribution", self._sample_in_background, self.options.interval
        )

    def _sample_in_background(self) -> None:
        TAG_VAR.set(0)  # whatever ran before us, our own memory is untagged
        try:
            self.sample()
        except Exception as exc:  # a bug here must not stop sampling
            self._error = f"{type(exc).__name__}: {exc}"

    def stop(self) -> None:
        """Stop the sampler and release the lease on the tracer."""
        self._running = False
        registration, self._registration = self._registration, None
        if registration is not None:
            registration.cancel()  # waits for a sample being taken
        if self._lease is not None:
            self._lease.release()
            self._lease = None
            _UserFrames.release()

    def after_fork(self) -> None:
        """In a forked child: new locks; the sampler restarts on next use."""
        self.registry.after_fork()
        self._sample_lock = threading.Lock()
        self._lock = threading.Lock()
        self._registration = None  # the fork dropped it (pyleakhunt.sampler)
        self._sampler_lost = self._running

    # -- the hot path -------------------------------------------------------

    def enter(self, endpoint: str) -> int:
        """Count a request for *endpoint*; return the tag to set."""
        if self._sampler_lost:
            self._restart_sampler()
        return self.registry.enter(endpoint)

    def _restart_sampler(self) -> None:
        with self._lock:
            if not self._sampler_lost:
                return  # another request restarted it meanwhile
            self._start_sampler()  # the first request after a fork wins
        # Outside the lock: a hook may bind a socket and start a thread.
        for hook in list(_after_fork_hooks):
            hook()

    # -- sampling -----------------------------------------------------------

    def sample(self, max_age: float = 0.0) -> bool:
        """Take a sample now, unless one was taken less than *max_age* s ago.

        Returns False when no sample could be taken (tracing is off); the
        reason is kept for the report.  Never raises.
        """
        if max_age and time.monotonic() - self._last_sample < max_age:
            return True
        # Outside the lock: a finalizer the collection runs may ask for a
        # report.
        collect = self.options.collect
        if collect or (
            collect is None and self._collection.allows(self.options.interval)
        ):
            self._collection.collect()
        with self._sample_lock:
            if max_age and time.monotonic() - self._last_sample < max_age:
                return True
            try:
                requests = self.registry.requests()
                snapshot = pyleakhunt.take_snapshot(traces=False)
            except Exception as exc:  # tracer stopped or hooks removed
                self._error = f"{type(exc).__name__}: {exc}"
                return False
            self._last_sample = time.monotonic()
            self._add_sample(snapshot.raw, requests)
            return True

    def _add_sample(self, raw: RawSnapshot, requests: Dict[int, int]) -> None:
        totals, sites, counts, frames, untagged, lows = _reduce(raw, requests)
        max_sites = self.options.max_sites
        max_points = self.options.max_points
        with self._lock:
            for tag, served in requests.items():
                series = self._series.get(tag)
                if series is None:
                    series = self._series[tag] = _Series()
                tag_counts = counts.get(tag, {})
                line_lows = lows.get(tag, {})
                figures = {
                    line: (size, tag_counts[line], line_lows[line])
                    for line, size in sites.get(tag, {}).items()
                }
                point, kept = series.keep(
                    served, totals.get(tag, 0), figures, max_sites
                )
                series.add(point, max_points, {k: tag_counts[k] for k in kept})
                tag_frames = frames.get(tag, {})
                series.tracebacks = {k: tag_frames[k] for k in kept}
            self._untagged_bytes = untagged
            self._estimated = raw.sample_bytes > 0
            self._sample_bytes = raw.sample_bytes
            self._samples += 1
            self._error = None

    # -- reports ------------------------------------------------------------

    def report(self, refresh: Optional[float] = 1.0) -> AttributionReport:
        """Every endpoint's figures, the leaking ones first.

        A fresh sample is taken first unless one is less than *refresh*
        seconds old (0: always; None: never).
        """
        if refresh is not None and pyleakhunt.is_tracing():
            self.sample(max_age=refresh)
        names = self.registry.names()
        requests = self.registry.requests()
        rule = self.options.rule
        min_per_request = self.options.min_bytes_per_request
        with self._lock:
            endpoints = [
                _judge(
                    names[tag],
                    requests.get(tag, 0),
                    series,
                    _rule_for(rule, series, min_per_request),
                    self._estimated,
                    min_per_request,
                )
                for tag, series in self._series.items()
                if tag in names and series.points
            ]
            tracing = pyleakhunt.is_tracing()
            report = AttributionReport(
                timestamp=time.time(),
                tracing=tracing,
                estimated=self._estimated,
                sample_bytes=self._sample_bytes,
                interval=self.options.interval,
                samples=self._samples,
                traced_bytes=pyleakhunt.get_traced_memory()[0] if tracing else None,
                rss_bytes=rss_bytes(),
                untagged_bytes=self._untagged_bytes,
                endpoints=[],
                error=self._error,
            )
        endpoints.sort(
            key=lambda e: (
                e.leaking,
                (e.bytes_per_request or 0.0) if e.leaking else e.retained_bytes,
            ),
            reverse=True,
        )
        return replace(report, endpoints=endpoints)

    def snapshot(self) -> RawSnapshot:
        """An aggregated snapshot of the tagged memory, with endpoint names.

        Untagged sites (memory allocated outside requests) are left out:
        the file holds what the endpoints retain, named by ``tags``.
        """
        raw = pyleakhunt.take_snapshot(traces=False).raw
        names = self.registry.names()
        return replace(
            raw,
            sites=[site for site in raw.sites if site.tag in names],
            tags=names,
        )


def _reduce(
    raw: RawSnapshot, requests: Dict[int, int]
) -> Tuple[
    Dict[int, int],
    Dict[int, Dict[RawFrame, int]],
    Dict[int, Dict[RawFrame, int]],
    Dict[int, Dict[RawFrame, RawFrames]],
    int,
    Dict[int, Dict[RawFrame, int]],
]:
    """Per tag: retained bytes, and bytes, blocks, biggest traceback and
    floor (low-water mark) per line; and the untagged bytes.

    One pass over the snapshot's sites; sites of unknown tags (from before
    a `reset`) and of the hunter's own files are skipped.
    """
    totals: Dict[int, int] = {}
    sites: Dict[int, Dict[RawFrame, int]] = {}
    counts: Dict[int, Dict[RawFrame, int]] = {}
    frames: Dict[int, Dict[RawFrame, RawFrames]] = {}
    biggest: Dict[Tuple[int, RawFrame], int] = {}
    lows: Dict[int, Dict[RawFrame, int]] = {}
    untagged = 0
    for site in raw.sites:
        tag = site.tag
        if not tag:
            untagged += site.size
            continue
        if tag not in requests or not site.count:
            continue
        if not site.frames:
            line = _UNKNOWN_FRAME
        elif site.frames[0][0] in OWN_FILES:
            continue
        else:
            # The user's line, where the tracer recorded it below a
            # library's (Attribution.start): the line a person must change.
            line = userframe.user_raw_frame(site.frames)
        totals[tag] = totals.get(tag, 0) + site.size
        by_line = sites.setdefault(tag, {})
        by_line[line] = by_line.get(line, 0) + site.size
        tag_counts = counts.setdefault(tag, {})
        tag_counts[line] = tag_counts.get(line, 0) + site.count
        tag_lows = lows.setdefault(tag, {})
        tag_lows[line] = tag_lows.get(line, 0) + site.low
        if site.size > biggest.get((tag, line), -1):
            biggest[tag, line] = site.size
            frames.setdefault(tag, {})[line] = site.frames or (_UNKNOWN_FRAME,)
    return totals, sites, counts, frames, untagged, lows


def _rule_for(rule: GrowthRule, series: _Series, min_per_request: float) -> GrowthRule:
    """*rule*, with its least growth raised to *min_per_request* bytes per
    request served over the series' window."""
    points = series.points
    served = points[-1].requests - points[0].requests if points else 0
    least = int(min_per_request * served)
    if least <= rule.min_growth_bytes:
        return rule
    return replace(rule, min_growth_bytes=least)


def _steady(
    rule: GrowthRule,
    xs: List[float],
    sizes: List[int],
    floors: List[int],
    min_per_request: float,
) -> Optional[Tuple[float, Optional[float]]]:
    """The rule's consistency and the slope in bytes per request of the
    series that grew (`GrowthRule.verdict`: the retained bytes, or else
    their floors, which the requests in flight at a sample do not raise),
    if that slope also reaches ``min_bytes_per_request``.

    The rule's net growth is last point minus first, so one high end point
    (objects on CPython's free lists, credited to whichever endpoint first
    allocated their block, come and go by a few hundred bytes) can carry a
    flat series over ``min_bytes_per_request``; the least-squares slope,
    the figure the report prints as bytes per request, is not moved much by
    one point.  A leak of one small object per request (50 B or more) is
    far above the floor on both measures.
    """
    found = rule.verdict(xs, sizes, floors, min_slope=min_per_request)
    if found is None:
        return None
    consistency, used_xs, used = found
    return consistency, growth.slope(used_xs, used) if len(used_xs) >= 2 else None


def _judge(
    name: str,
    served: int,
    series: _Series,
    rule: GrowthRule,
    estimated: bool,
    min_per_request: float = 0.0,
) -> EndpointReport:
    """One endpoint's verdict: the growth rule over retained bytes vs requests."""
    points = series.points
    xs = [float(p.requests) for p in points]
    retained = [p.retained for p in points]
    floors = [p.floor for p in points]
    found = _steady(rule, xs, retained, floors, min_per_request)
    consistency = None if found is None else found[0]
    if found is not None:
        slope = found[1]
    else:
        slope = growth.slope(xs, retained) if len(points) >= 2 else None
    if consistency is not None:
        verdict = "leaking"
    elif len(points) < rule.min_samples:
        verdict = "too early"
    else:
        verdict = "not leaking"
    sites = []
    last = points[-1]
    for line, size in last.sites.items():
        sizes = [p.sites.get(line, 0) for p in points]
        line_floors = [p.site_floors.get(line, 0) for p in points]
        site_found = _steady(rule, xs, sizes, line_floors, min_per_request)
        if site_found is not None:
            per_request = site_found[1]
        else:
            # Over the points that kept the line only: a line left out of
            # a point (max_sites) is not a line that held nothing then.
            kept_xs = [x for x, p in zip(xs, points) if line in p.sites]
            kept_sizes = [p.sites[line] for p in points if line in p.sites]
            per_request = (
                growth.slope(kept_xs, kept_sizes) if len(kept_xs) >= 2 else None
            )
        sites.append(
            SiteReport(
                filename=line[0],
                lineno=line[1],
                size=size,
                count=series.counts.get(line, 0),
                bytes_per_request=per_request,
                leaking=site_found is not None,
                traceback=series.tracebacks.get(line, (line,)),
            )
        )
    # The lines that leak first, the fastest first; then the biggest.
    sites.sort(
        key=lambda s: (
            s.leaking,
            (s.bytes_per_request or 0.0) if s.leaking else s.size,
        ),
        reverse=True,
    )
    return EndpointReport(
        endpoint=name,
        requests=served,
        retained_bytes=last.retained,
        bytes_per_request=slope,
        leaking=consistency is not None,
        verdict=verdict,
        samples=len(points),
        consistency=consistency,
        estimated=estimated,
        sites=sites,
        points=tuple((p.requests, p.retained) for p in points),
    )


# --------------------------------------------------------------------------
# The one instance of the process

_shared: Optional[Attribution] = None
_shared_lock = threading.Lock()


def shared(**options: Any) -> Attribution:
    """The process's `Attribution`, created and started on first use.

    *options* are `Options` fields.  The first call decides them; a later
    call that asks for different ones gets the running instance and a
    warning (there can be only one per process).
    """
    global _shared
    # The thread that sets an integration up often runs the server's loop
    # too.  Give the tag a value in its context, so that the core reads it
    # from the variable's cache rather than looking it up on every
    # allocation (see untag).
    if TAG_VAR.get() == 0:
        TAG_VAR.set(0)
    with _shared_lock:
        if _shared is None:
            _shared = Attribution(Options(**options)).start()
            return _shared
        current = _shared.options
        wanted = replace(current, **options)
        if wanted != current:
            warnings.warn(
                "pyleakhunt attribution is already running with %r; "
                "ignoring %r" % (current, options),
                RuntimeWarning,
                stacklevel=3,
            )
        return _shared


def current() -> Optional[Attribution]:
    """The running `Attribution`, or None."""
    return _shared


def reset() -> None:
    """Stop attribution and forget every endpoint (tests; reconfiguring).

    The tag variable stays registered with the core: a request being
    served keeps its tag, which no endpoint will ever have again.
    """
    global _shared
    with _shared_lock:
        instance, _shared = _shared, None
    if instance is not None:
        instance.stop()


#: Run in a forked child by its first request, once the sampler restarted
#: there: the integrations restart their report listeners so, in the
#: processes that serve and only in those (a pre-fork server's parent
#: serves none).  Each hook must never raise.
_after_fork_hooks: List[Callable[[], None]] = []


def on_first_request_after_fork(hook: Callable[[], None]) -> None:
    """Run *hook* in a forked child by its first request (at most once a
    fork).  Registering the same hook twice runs it once."""
    if hook not in _after_fork_hooks:
        _after_fork_hooks.append(hook)


def _after_fork_in_child() -> None:
    global _shared_lock
    _shared_lock = threading.Lock()
    if _shared is not None:
        _shared.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
