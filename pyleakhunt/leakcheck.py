"""Does calling this leak?  The rule behind the pytest plugin.

`check` calls a function *warmup* times, then *rounds* times, and takes an
aggregated snapshot after the warm-up and after every round, once garbage
is collected and the interpreter's known caches are cleared.  In the spirit
of CPython's ``regrtest -R``:

- a call site (a full traceback) **leaks** when its live blocks grow in
  *every* measured round;
- a check **fails** when the leaking sites together grow by more than
  *limit* bytes per round.

A cache that fills and stops, a bounded ``lru_cache`` once full, or memory
that is freed again does not grow in every round, so it is not reported.

Sites whose most recent frame is in the test framework (pytest, pluggy,
the warnings machinery) or in pyleakhunt itself are not the code under
test, and are left out.
"""

from __future__ import annotations

import fnmatch
import gc
import linecache
import os
import sys
import threading
import time
from array import array
from dataclasses import dataclass
from itertools import repeat
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

import pyleakhunt

from . import _freelist, lease
from .growth import TRACER_FILES
from .snapshot import Traceback, untraced
from .units import format_size, parse_size
from .userframe import user_frame, via_text

#: ``ignore=``: filename patterns, or a predicate that gets a traceback.
Ignore = Union[None, str, Iterable[str], Callable[[Traceback], bool]]


def _module_dir(name: str) -> Optional[str]:
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    return os.path.dirname(os.path.abspath(path)) + os.sep if path else None


_OWN_FILES = TRACER_FILES | {
    os.path.abspath(__file__),
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "pytest_plugin.py"),
}


def _framework_prefixes() -> Tuple[str, ...]:
    prefixes = [_module_dir(name) for name in ("_pytest", "pluggy")]
    return tuple(p for p in prefixes if p)


def _framework_files() -> frozenset:
    warnings_module = sys.modules.get("warnings")
    files = set(_OWN_FILES)
    if warnings_module is not None and getattr(warnings_module, "__file__", None):
        files.add(os.path.abspath(warnings_module.__file__))
    return frozenset(files)


@dataclass
class LeakingSite:
    """A call site whose live blocks grew in every measured round."""

    traceback: Traceback
    size: int
    count: int
    size_deltas: List[int]
    count_deltas: List[int]

    @property
    def bytes_per_round(self) -> float:
        return sum(self.size_deltas) / len(self.size_deltas)

    @property
    def blocks_per_round(self) -> float:
        return sum(self.count_deltas) / len(self.count_deltas)


@dataclass
class LeakReport:
    """What `check` found."""

    rounds: int
    warmup: int
    limit: int
    nframe: int
    sites: List[LeakingSite]
    #: Measured rounds actually run: fewer than *rounds* when the check
    #: stopped early, no site having grown in every round so far.
    rounds_run: int = 0

    @property
    def bytes_per_round(self) -> float:
        """Growth per round of all leaking sites together."""
        return sum(site.bytes_per_round for site in self.sites)

    @property
    def leaked(self) -> bool:
        return bool(self.sites) and self.bytes_per_round > self.limit

    def format(self, max_sites: int = 10) -> str:
        """The failure message: where it leaks, not just that it does."""
        lines = [
            "memory leak: %d call site(s) grew in each of %d rounds, "
            "%s per round in all (limit %s)"
            % (
                len(self.sites),
                self.rounds,
                format_size(self.bytes_per_round),
                format_size(self.limit),
            )
        ]
        for site in self.sites[:max_sites]:
            # The user's own line first, the library frame that allocated
            # beneath it (pyleakhunt.userframe).
            frame, via = user_frame(site.traceback)
            assert frame is not None
            source = linecache.getline(frame.filename, frame.lineno).strip()
            lines.append("")
            lines.append(
                "%s:%d: %s per round, %s blocks per round"
                % (
                    frame.filename,
                    frame.lineno,
                    format_size(site.bytes_per_round),
                    _number(site.blocks_per_round),
                )
            )
            if source:
                lines.append("    " + source)
            if via is not None:
                lines.append("  " + via_text(via))
            lines.append(
                "  per round: %s bytes, %s blocks"
                % (_deltas(site.size_deltas), _deltas(site.count_deltas))
            )
            lines.append("  traceback (most recent call first):")
            lines.extend("  " + line for line in _format_callers(site.traceback))
        if len(self.sites) > max_sites:
            lines.append("")
            lines.append("... and %d more site(s)" % (len(self.sites) - max_sites))
        return "\n".join(lines)


def _format_callers(traceback: Traceback) -> List[str]:
    """The frames of the code under test: those the leak check called."""
    frames = []
    for frame in reversed(traceback):
        if frame.filename in _OWN_FILES:
            break
        frames.append(frame._frame)
    return Traceback(tuple(frames)).format(most_recent_first=True)


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else "%.1f" % value


def _deltas(values: Sequence[int]) -> str:
    return "[" + ", ".join("%+d" % v for v in values) + "]"


# --------------------------------------------------------------------------
# Between rounds


def clear_known_caches() -> None:
    """Empty the caches the interpreter and the stdlib fill lazily."""
    _clear_interpreter_caches()
    for module_name, clear in _CACHE_CLEARERS:
        module = sys.modules.get(module_name)
        if module is not None:
            try:
                clear(module)
            except Exception:  # a cache we could not clear only costs precision
                pass
    # A registry exists in the few modules that warned; map() looks in the
    # five hundred namespaces of a test run without a Python-level loop.
    registries = map(dict.get, _Namespaces.of_modules(), repeat("__warningregistry__"))
    for registry in filter(None, registries):
        if isinstance(registry, dict):
            registry.clear()


class _Namespaces:
    """The modules' namespaces, gathered again when a module comes or goes.

    Settling twice a test, a test run paid a third of a millisecond each
    time to go through five hundred modules (a missing attribute raises
    inside ``getattr``; a module's ``__getattr__`` runs).
    """

    modules = -1
    namespaces: List[Dict[str, Any]] = []

    @classmethod
    def of_modules(cls) -> List[Dict[str, Any]]:
        if len(sys.modules) != cls.modules:
            namespaces = []
            for module in list(sys.modules.values()):
                namespace = getattr(module, "__dict__", None)
                if isinstance(namespace, dict):
                    namespaces.append(namespace)
            cls.namespaces = namespaces
            cls.modules = len(sys.modules)
        return cls.namespaces


# 3.13 renamed it, and deprecated the old name (a warning on 3.14+).
_clear_interpreter_caches: Callable[[], None] = (
    getattr(sys, "_clear_internal_caches", None) or sys._clear_type_cache
)


def _clear_typing(module: Any) -> None:
    for cleanup in getattr(module, "_cleanups", ()):
        cleanup()


_CACHE_CLEARERS: List[Tuple[str, Callable[[Any], None]]] = [
    ("re", lambda m: m.purge()),
    ("struct", lambda m: m._clearcache()),
    ("typing", _clear_typing),
    ("fnmatch", lambda m: m._compile_pattern.cache_clear()),
    ("urllib.parse", lambda m: m.clear_cache()),
    ("_strptime", lambda m: m._regex_cache.clear()),
    ("linecache", lambda m: m.clearcache()),
    ("warnings", lambda m: m._filters_mutated()),
]


def collect() -> None:
    """Run the cyclic collector until it finds nothing more."""
    for _ in range(3):
        if gc.collect() == 0:
            break


# --------------------------------------------------------------------------
# The check


def _ignored_by(ignore: Ignore) -> Callable[[Traceback], bool]:
    if ignore is None:
        return lambda traceback: False
    if callable(ignore):
        return ignore
    patterns = [ignore] if isinstance(ignore, str) else list(ignore)
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise TypeError(
                "ignore= takes filename patterns or a predicate on a traceback, "
                "not %r" % (pattern,)
            )
    return lambda traceback: any(
        fnmatch.fnmatch(frame.filename, pattern)
        for frame in traceback
        for pattern in patterns
    )


@untraced
def _measure(excluded_files: frozenset, excluded_prefixes: Tuple[str, ...]):
    snapshot = pyleakhunt.take_snapshot(traces=False)
    figures: Dict[tuple, List[int]] = {}
    for site in snapshot.sites:
        filename = site.frames[0][0]
        if filename in excluded_files or filename.startswith(excluded_prefixes):
            continue
        if filename == _freelist.FILE:
            continue  # reused from a free list: its real site is unknown
        entry = figures.setdefault(site.frames, [0, 0])
        entry[0] += site.size
        entry[1] += site.count
    return figures


#: pymalloc serves requests of this many bytes or fewer; free lists hold
#: only such small objects.
_SMALL_BLOCK = 512


def _other_threads() -> tuple:
    """The other Python threads of the process and the CPU time each has
    used, in nanoseconds: equal from one call to the next only if none of
    them ran in between (none can free a block without running).

    Each thread's own CPU clock is read, which counts its time exactly, to
    the nanosecond, even while it runs; the process's clock less this
    thread's would include the time between the two reads, and a thread
    that frees a few blocks runs for about as long.
    """
    me = threading.get_ident()
    used = []
    for ident in sorted(sys._current_frames()):
        if ident == me:
            continue
        try:
            clock = time.pthread_getcpuclockid(ident)
            used.append((ident, time.clock_gettime_ns(clock)))
        except (OSError, AttributeError):  # gone meanwhile; no such clocks
            return (object(),)  # equal to no other answer: "they may have"
    return tuple(used)


class _Growth:
    """The measures of a check, kept for the sites still growing.

    After the first round, only the sites that grew in it are followed
    (in arrays made then), and each round drops those that did not grow:
    when none is left, the answer is known.  What is stored does not grow
    from round to round, so that the process's count of small blocks
    (``sys.getallocatedblocks``, read before each measure) moves only with
    what the code under test keeps: see `sites`.
    """

    def __init__(
        self, rounds: int, ignored: Callable[[Traceback], bool], first: Dict
    ) -> None:
        self.rounds = rounds
        self.ignored = ignored
        self.previous = first
        self.measured = 1
        self.followed: Optional[Dict[tuple, array]] = None
        self.process = array("q", bytes(8 * (rounds + 1)))
        self.threads: List[tuple] = [()] * (rounds + 1)

    def add(
        self,
        figures: Dict[tuple, List[int]],
        process_blocks: int,
        threads: tuple,
    ) -> bool:
        """Take a round's measure; False once no site grew in every round.

        *process_blocks* is ``sys.getallocatedblocks()`` and *threads*
        `_other_threads()`, both read just before *figures*.
        """
        index = self.measured
        self.measured += 1
        self.process[index] = process_blocks
        self.threads[index] = threads
        if self.followed is None:
            self.followed = {}
            for frames, (size, count) in figures.items():
                before = self.previous.get(frames, (0, 0))
                if count > before[1] and not self.ignored(Traceback(frames)):
                    line = array("q", bytes(16 * (self.rounds + 1)))
                    line[0], line[1] = before
                    line[2], line[3] = size, count
                    self.followed[frames] = line
            self.previous = {}
        else:
            for frames in list(self.followed):
                line = self.followed[frames]
                size, count = figures.get(frames, (0, 0))
                if count > line[2 * index - 1]:
                    line[2 * index], line[2 * index + 1] = size, count
                else:
                    del self.followed[frames]
        return bool(self.followed)

    def sites(self) -> List[LeakingSite]:
        """The sites that grew in every round.

        Objects made before tracing began have untraced blocks.  When such
        an object dies and a new one reuses its block from a free list,
        the new one is invisible until, some round, a fresh block replaces
        it: the site of a bounded cache of small objects (a full
        ``lru_cache`` of lists) then gains a traced block or two every
        round, without the process holding one block more.  So a site of
        small blocks counts as leaking only if the process's count of
        small blocks grew by as many in the last rounds (the first ones
        fill the free lists and settle the check's own state and the test
        framework's); a real leak of small objects adds them.  Two rounds
        when there are four or more: over one, the block of slack below
        cannot tell a cache that trades one untraced block for a traced one
        a round (more-itertools' test_primes: a 128-entry ``lru_cache`` of
        2-tuples, churned 9,592 times a round) from a leak of one block.

        The process's count is trusted only when it is this thread's:
        no other thread ran in the window (their CPU time did not move;
        with the GIL, a thread that freed blocks has run), and no round of
        the window changed the count by more than a block either way (the
        call itself freeing older objects moves it by more).  Otherwise
        every growing site is reported: a false alarm from a bounded cache
        is better than a leak hidden by another thread's frees.
        """
        n = self.measured
        process = self.process
        since = n - 3 if n >= 5 else n - 2
        settled = (
            since >= 2
            and all(process[1:n])
            and all(abs(process[i + 1] - process[i]) <= 1 for i in range(since, n - 1))
            and self.threads[n - 1] == self.threads[since]
        )
        sites = []
        for frames, line in (self.followed or {}).items():
            sizes = list(line[0 : 2 * n : 2])
            counts = list(line[1 : 2 * n : 2])
            if settled:
                growth = counts[-1] - counts[since]
                small = sizes[-1] - sizes[since] <= growth * _SMALL_BLOCK
                # A block of slack: a list outgrowing pymalloc moves its array.
                if small and growth > process[n - 1] - process[since] + 1:
                    continue
            sites.append(
                LeakingSite(
                    traceback=Traceback(frames),
                    size=sizes[-1],
                    count=counts[-1],
                    size_deltas=[b - a for a, b in zip(sizes, sizes[1:])],
                    count_deltas=[b - a for a, b in zip(counts, counts[1:])],
                )
            )
        sites.sort(key=lambda s: (s.bytes_per_round, s.blocks_per_round), reverse=True)
        return sites


class _TracerSession:
    """A lease on the tracer for the check (`pyleakhunt.lease`): at least
    *nframe* frames while it runs, the tracer left as it was found."""

    def __init__(self, nframe: int) -> None:
        self.nframe = nframe
        self.lease: Optional[lease.Lease] = None

    def __enter__(self) -> None:
        # Fresh objects (3.10 to 3.12): a dict, list, tuple or float kept
        # per call is allocated at its own line, not made in the memory of
        # one the call freed earlier.
        self.lease = lease.acquire(self.nframe, owner="leakcheck", fresh_objects=True)

    def __exit__(self, *exc_info: object) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None


class _YoungObjectsOnly:
    """Collect garbage among the objects made during the check only.

    A full collection walks every object of the process: in a test run
    that collected tens of thousands of tests it takes tens of
    milliseconds, several times per check.  Objects older than the check
    are frozen for its duration (``gc.freeze``): a leak check is about
    what the calls make.

    Objects the program froze itself are thawed by the first check
    (``gc.unfreeze`` thaws every frozen object; telling the program's
    apart would need ``gc.get_freeze_count``, which walks them all), and
    frozen again by each check.  ``packaging``'s suite freezes its
    collected tests: leaving them alone cost each check a walk of its
    growing heap, hundreds of milliseconds late in the run.
    """

    #: Checks running (a check within a check's call leaves it alone).
    depth = 0

    def __enter__(self) -> None:
        _YoungObjectsOnly.depth += 1
        if _YoungObjectsOnly.depth == 1:
            gc.freeze()

    def __exit__(self, *exc_info: object) -> None:
        _YoungObjectsOnly.depth -= 1
        if _YoungObjectsOnly.depth == 0:
            gc.unfreeze()


def _grown(before: Dict[tuple, List[int]], after: Dict[tuple, List[int]]) -> set:
    return {
        frames
        for frames, (_, count) in after.items()
        if count > before.get(frames, (0, 0))[1]
    }


def check(
    func: Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: Optional[Dict[str, Any]] = None,
    *,
    rounds: int = 5,
    warmup: int = 2,
    limit: Union[int, str] = "0 B",
    nframe: int = 10,
    ignore: Ignore = None,
    between_rounds: Optional[Callable[[], None]] = None,
    before_call: Optional[Callable[[], None]] = None,
    after_call: Optional[Callable[[], None]] = None,
    stop_early: bool = True,
) -> LeakReport:
    """Call ``func(*args, **kwargs)`` repeatedly and report what leaks.

    *before_call* and *after_call*, if given, run just before and after
    each call (the pytest plugin sets the test's fixtures up and tears them
    down there); what *after_call* frees counts as the call's, and what
    *before_call* makes is kept out of the free-list handling.
    *between_rounds*, if given, runs after each call, before garbage is
    collected.  With *stop_early*, the check ends as soon as no site has
    grown in every round so far: the rule's answer is then known (a clean
    function takes one round).
    """
    if rounds < 2:
        raise ValueError(f"rounds must be at least 2, not {rounds}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, not {warmup}")
    limit_bytes = parse_size(limit)
    ignored = _ignored_by(ignore)
    kwargs = kwargs or {}
    excluded_files = _framework_files()
    excluded_prefixes = _framework_prefixes()

    def call() -> None:
        func(*args, **kwargs)
        if after_call is not None:
            after_call()

    def settle() -> None:
        if between_rounds is not None:
            between_rounds()
        clear_known_caches()
        collect()

    def measured_call(lists: _freelist.FreeLists) -> None:
        if before_call is not None:
            before_call()
        # What the call makes must be allocated at its own line, not
        # handed out of a free list (see _freelist).
        lists.before_call()
        try:
            call()
        finally:
            settle()
            lists.after_call()

    with _YoungObjectsOnly():
        for _ in range(warmup):
            if before_call is not None:
                before_call()
            call()
        settle()
        with _TracerSession(nframe):
            lists = _freelist.FreeLists()
            try:
                growth = _Growth(
                    rounds, ignored, _measure(excluded_files, excluded_prefixes)
                )
                # What measuring keeps is the check's, not the code's: left
                # out of the process's count.  (The tracer keeps a site's
                # frames as tuples from the first snapshot that shows it: a
                # site first seen in round 3 moved the count by 16 blocks,
                # and its bounded cache looked like a leak.)  What measuring
                # left to the collector (3.10) or in the free lists is freed
                # first, as after a call: else the count is off by a block
                # or two a round, and hides a leak of one.
                kept_by_measures = 0
                for _ in range(rounds):
                    measured_call(lists)
                    process_blocks = sys.getallocatedblocks()
                    threads = _other_threads()
                    figures = _measure(excluded_files, excluded_prefixes)
                    grew = growth.add(
                        figures, process_blocks - kept_by_measures, threads
                    )
                    if not grew and stop_early:
                        break
                    del figures
                    collect()
                    lists.after_call()
                    kept_by_measures += sys.getallocatedblocks() - process_blocks
            finally:
                lists.close()
    return LeakReport(
        rounds=rounds,
        warmup=warmup,
        limit=limit_bytes,
        nframe=nframe,
        sites=growth.sites(),
        rounds_run=growth.measured - 1,
    )


def assert_no_leak(
    func: Callable[..., Any],
    *args: Any,
    rounds: int = 5,
    warmup: int = 2,
    limit: Union[int, str] = "0 B",
    nframe: int = 10,
    ignore: Ignore = None,
    **kwargs: Any,
) -> LeakReport:
    """Raise AssertionError, saying where, if calling *func* leaks."""
    report = check(
        func,
        args,
        kwargs,
        rounds=rounds,
        warmup=warmup,
        limit=limit,
        nframe=nframe,
        ignore=ignore,
    )
    if report.leaked:
        raise AssertionError(report.format())
    return report
