"""LeakWatcher on real programs: what it must catch and what it must not."""

import itertools
import os
import random
import threading
import time

import pytest

import pyleakhunt
from pyleakhunt.fileformat import read_timeline
from pyleakhunt.growth import Sample, suspects_in
from pyleakhunt.process.proc import rss_bytes
from pyleakhunt.watcher import LeakWatcher

GLOBAL_LIST = []
UNBOUNDED_CACHE = {}
BOUNDED_CACHE = {}


def line_of(func, offset):
    return func.__code__.co_firstlineno + offset


def grow_global_list(i):
    GLOBAL_LIST.append("item %d" % i * 4)  # leaks


def fill_unbounded_cache(i):
    UNBOUNDED_CACHE[i] = [i] * 10  # leaks


def fill_bounded_cache(i):
    if len(BOUNDED_CACHE) < 300:
        BOUNDED_CACHE[i % 300] = [i] * 10  # fills, then plateaus


def churn(i):
    data = [str(j) * 5 for j in range(200)]  # freed every call
    return len(data)


def worker_leak(stop, sink):
    i = 0
    while not stop.is_set():
        sink.append(bytearray(64))  # leaks, in a thread
        i += 1
        if i % 50 == 0:
            time.sleep(0.001)


@pytest.fixture(autouse=True)
def empty_globals():
    for container in (GLOBAL_LIST, UNBOUNDED_CACHE, BOUNDED_CACHE):
        container.clear()
    yield
    for container in (GLOBAL_LIST, UNBOUNDED_CACHE, BOUNDED_CACHE):
        container.clear()


@pytest.fixture
def steady_clock(monkeypatch):
    """Snapshots taken by hand one (fake) second apart.

    A hand-driven round lasts microseconds, so one scheduling hiccup late in
    a test weighed more than the whole run before it and made a steady leak
    look like a plateau (the growth rule compares rates per second).
    """
    ticks = itertools.count(1_700_000_000)
    monkeypatch.setattr(time, "time", lambda: float(next(ticks)))


def suspect_lines(watcher):
    return {(s.filename, s.lineno) for s in watcher.suspects()}


def test_the_five_classic_cases_are_told_apart(steady_clock):
    stop = threading.Event()
    sink = []
    worker = threading.Thread(target=worker_leak, args=(stop, sink))
    watcher = LeakWatcher(interval=60)  # sampled by hand
    watcher.sample()
    worker.start()
    try:
        for round_ in range(12):
            for i in range(round_ * 300, (round_ + 1) * 300):
                grow_global_list(i)
                fill_unbounded_cache(i)
                fill_bounded_cache(i)
                churn(i)
            time.sleep(0.01)
            watcher.sample()
    finally:
        stop.set()
        worker.join()
        watcher.stop()
    lines = suspect_lines(watcher)
    here = __file__
    assert (here, line_of(grow_global_list, 1)) in lines
    assert (here, line_of(fill_unbounded_cache, 1)) in lines
    assert (here, line_of(worker_leak, 3)) in lines
    assert (here, line_of(fill_bounded_cache, 2)) not in lines
    assert (here, line_of(churn, 1)) not in lines


def keep_in_a_local(watcher):
    """main() of a program whose leak is a local: freed when it returns."""
    kept = []
    for round_ in range(10):
        for i in range(200):
            kept.append({"id": round_ * 200 + i})  # leaks until main() returns
        watcher.sample()


def test_a_leak_in_a_local_is_a_suspect_freed_at_exit(steady_clock):
    # The closing sample, taken by stop() once main() returned, finds the
    # list freed: the leak grew at every sample until then.
    watcher = LeakWatcher(interval=3600).start()  # then sampled by hand
    keep_in_a_local(watcher)
    watcher.stop()
    found = [s for s in watcher.suspects() if s.filename == __file__]
    assert [s.lineno for s in found[:1]] == [line_of(keep_in_a_local, 5)]
    # (What is left is dead dicts in CPython's free list, from 3.13.)
    assert found[0].freed_at_exit and found[0].size < found[0].growth_bytes / 10


def test_a_watch_that_ends_while_the_program_goes_on_has_no_closing_sample(
    steady_clock,
):
    # An attach's watch ends, the process does not: what it freed just
    # before the last sample was given back while it ran.
    watcher = LeakWatcher(interval=3600).start()
    keep_in_a_local(watcher)
    watcher.stop(closing=False)
    assert [s for s in watcher.suspects() if s.filename == __file__] == []


#: One small object kept per call, of each type CPython keeps free lists of.
SMALL_OBJECTS = {
    "dict": lambda i: {"id": i},
    "list": lambda i: [i],
    "tuple": lambda i: (i, i),
    "float": lambda i: float(i),
}


@pytest.mark.parametrize("kind", sorted(SMALL_OBJECTS))
def test_small_objects_freed_before_tracing_began_do_not_hide_a_leak(
    kind, steady_clock
):
    # CPython's free lists full of blocks freed while nothing traced: the
    # objects made in them are never traced, unless the watcher empties
    # the free lists when it starts the tracer.
    assert not pyleakhunt.is_tracing()
    make = SMALL_OBJECTS[kind]
    for _ in range(3):
        [make(i) for i in range(3000)]
    watcher = LeakWatcher(interval=60)  # sampled by hand
    watcher.sample()
    try:
        for round_ in range(10):
            for i in range(round_ * 200, (round_ + 1) * 200):
                GLOBAL_LIST.append(make(i))
            watcher.sample()
    finally:
        watcher.stop()
    top = watcher.suspects()[0]
    assert (top.filename, top.lineno) == (__file__, make.__code__.co_firstlineno)


def churn_small_objects(i):
    # Dicts with str keys too: their key tables have a free list of their
    # own, which no reference tracer sees.
    return len([([j], {j: j}, {"k": j}, (j, i), float(j)) for j in range(30)])


@pytest.mark.parametrize("kind", sorted(SMALL_OBJECTS))
def test_a_small_object_kept_beside_code_that_frees_its_kind_is_named(
    kind, steady_clock
):
    # The kept object would be made in the memory of one the churn freed:
    # on 3.10 to 3.12 the watcher keeps the free lists empty, from 3.13
    # the tracer moves the reused block; either way it is at its own line.
    make = SMALL_OBJECTS[kind]
    watcher = LeakWatcher(interval=60)  # sampled by hand
    watcher.sample()
    try:
        for round_ in range(10):
            for i in range(round_ * 200, (round_ + 1) * 200):
                churn_small_objects(i)
                GLOBAL_LIST.append(make(i))
            watcher.sample()
    finally:
        watcher.stop()
    suspects = watcher.suspects()
    top = suspects[0]
    assert (top.filename, top.lineno) == (__file__, make.__code__.co_firstlineno)
    churn_line = (__file__, line_of(churn_small_objects, 1))
    assert churn_line not in {(s.filename, s.lineno) for s in suspects}


#: A batch of small objects of each kind, one line each: the program keeps
#: one object of every batch it makes.
BATCHES = {
    "dict": lambda n: [{"id": j} for j in range(n)],
    "list": lambda n: [[j] for j in range(n)],
    "tuple": lambda n: [(j, j) for j in range(n)],
    "str": lambda n: ["item %d" % j for j in range(n)],
}


@pytest.mark.parametrize("kind", sorted(BATCHES))
def test_one_object_kept_of_every_batch_is_found_though_samples_come_mid_batch(
    kind, steady_clock
):
    # Each sample comes while a batch of random size is alive, as a sample
    # of a busy program does: the batch line's size at the samples is
    # mostly that batch, and what it keeps is a few KB under up to 300 KB
    # of noise.  Its floors (the lowest size since the sample before) are
    # what it kept, and from 3.13 the dead objects of its kind that
    # CPython keeps for reuse (up to 2,000 tuples), whose number varies:
    # 100 objects kept a round stand well above that.
    rng = random.Random(11)
    make = BATCHES[kind]
    watcher = LeakWatcher(interval=60)  # sampled by hand
    watcher.sample()
    try:
        for _round in range(12):
            for _ in range(100):
                GLOBAL_LIST.append(make(50)[0])
            batch = make(rng.randint(0, 3000))
            watcher.sample()  # mid-batch
            del batch
    finally:
        watcher.stop()
    suspects = watcher.suspects()
    top = suspects[0]
    assert (top.filename, top.lineno) == (
        __file__,
        make.__code__.co_firstlineno,
    ), [(s.lineno, s.growth_bytes, s.consistency) for s in suspects]


def test_a_thinned_series_keeps_the_lowest_floor_of_the_samples_it_drops():
    from pyleakhunt.growth import Sample
    from pyleakhunt.snapshot import Traceback
    from pyleakhunt.watcher import _drop_samples

    a, b = Traceback((("a.py", 1),)), Traceback((("b.py", 2),))
    samples = [
        Sample(0.0, {a: (10, 1, 5), b: (10, 1, 7)}),
        Sample(1.0, {a: (10, 1, 2)}),  # b has no block: its floor is 0
        Sample(2.0, {a: (10, 1, 9), b: (10, 1, 8)}),
        Sample(3.0, {a: (10, 1, 4), b: (10, 1, 6)}),
        Sample(4.0, {a: (10, 1, 6), b: (10, 1, 6)}),
    ]
    kept = _drop_samples(samples, [True, False, False, True, True])
    assert [s.timestamp for s in kept] == [0.0, 3.0, 4.0]
    assert kept[0] is samples[0] and kept[2] is samples[4]
    assert kept[1].figures == {a: (10, 1, 2), b: (10, 1, 0)}


def test_a_suspect_reports_size_rate_and_traceback(steady_clock):
    watcher = LeakWatcher(interval=60, nframe=5)
    for round_ in range(6):
        for i in range(200):
            grow_global_list(round_ * 200 + i)
        watcher.sample()
    watcher.stop()
    top = watcher.suspects()[0]
    assert top.lineno == line_of(grow_global_list, 1)
    assert top.size > 0 and top.count >= 1000
    assert top.growth_bytes_per_snapshot > 0
    assert top.growth_bytes_per_s > 0
    assert top.consistency == 1.0
    assert len(top.traceback) > 1  # the full traceback, not just the key


def test_the_background_thread_samples_and_stops_the_tracer_it_started():
    # The list grows in every 20 ms interval, not in bursts 30 ms apart (a
    # third of the intervals saw no growth by design, so a 0.15 s stall of
    # this thread alone left it under the rule's 50% consistency).
    with LeakWatcher(interval=0.02) as watcher:
        for i in range(3000):
            grow_global_list(i)
            if i % 30 == 0:
                time.sleep(0.005)
    assert len(watcher.samples) >= 4
    assert watcher.error is None
    assert not pyleakhunt.is_tracing()
    assert watcher.suspects()[0].lineno == line_of(grow_global_list, 1)


def test_a_watcher_stopped_at_once_still_has_its_first_sample():
    watcher = LeakWatcher(interval=3600).start()
    assert len(watcher.samples) == 1  # taken by start(), not later
    watcher.stop()
    assert len(watcher.samples) == 2 and watcher.error is None


def test_the_watcher_leaves_a_running_tracer_running():
    pyleakhunt.start(3)
    watcher = LeakWatcher(interval=60)
    watcher.sample()
    watcher.stop()
    assert pyleakhunt.is_tracing()
    assert pyleakhunt.get_traceback_limit() == 3


def test_memory_stays_bounded_however_long_it_runs(steady_clock):
    watcher = LeakWatcher(interval=60, max_samples=8, max_sites=20)
    # 18 KB a round: in the top 20 sites from the first sample on, whatever
    # else the test process holds (with 4.5 KB, one full-suite run in many
    # kept it out of the early samples, and found no suspect).
    for round_ in range(40):
        for i in range(200):
            grow_global_list(round_ * 200 + i)
        watcher.sample()
    watcher.stop()
    samples = watcher.samples
    assert len(samples) <= 8
    assert all(len(s.figures) <= 20 for s in samples)
    # Thinning keeps the whole run in view: the first sample is still there.
    assert samples[0].timestamp < samples[1].timestamp
    assert watcher.suspects()[0].lineno == line_of(grow_global_list, 1)


def test_the_timeline_file_gives_the_same_suspects(tmp_path, steady_clock):
    path = tmp_path / "timeline.plh"
    watcher = LeakWatcher(interval=60, path=path)
    for round_ in range(6):
        for i in range(300):
            fill_unbounded_cache(round_ * 300 + i)
        watcher.sample()
    watcher.stop()
    from_file = suspects_in(read_timeline(path))
    assert [(s.filename, s.lineno) for s in from_file][:1] == [
        (__file__, line_of(fill_unbounded_cache, 1))
    ]


@pytest.mark.skipif(
    not os.path.exists("/proc/self/statm"), reason="RSS is read from /proc (Linux)"
)
def test_every_timeline_entry_carries_the_process_rss(tmp_path, steady_clock):
    path = tmp_path / "timeline.plh"
    watcher = LeakWatcher(interval=60, path=path)
    held = []
    around = []  # the process's RSS just before and just after each sample
    for _ in range(3):
        held.append(bytearray(4 << 20))  # 4 MiB more, every page touched
        held[-1][::4096] = b"x" * len(held[-1][::4096])
        before = rss_bytes()
        watcher.sample()
        around.append((before, rss_bytes()))
    watcher.stop(final_sample=False)
    entries = read_timeline(path)
    rss = [entry.attrs["rss_bytes"] for entry in entries]
    assert len(rss) == 3 and all(isinstance(v, int) for v in rss)
    traced = sum(site.size for site in entries[-1].sites)
    assert rss[-1] > traced >= 8 << 20
    # Each entry holds the RSS of its own moment.  (Whether RSS grows with
    # the arrays depends on what the allocator kept from earlier tests.)
    slack = 1 << 20
    for value, (before, after) in zip(rss, around):
        assert min(before, after) - slack <= value <= max(before, after) + slack


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        LeakWatcher(interval=0)
    with pytest.raises(ValueError):
        LeakWatcher(key_type="line")


def static_lines(n, size, filename="<static tables>"):
    """A function of *n* lines, each keeping *size* bytes in the list it is
    given: *n* call sites of the program's own code that never grow (the
    tables a program loads at start-up)."""
    body = "".join(f"    tables.append(bytes({size}))\n" for _ in range(n))
    namespace: dict = {}
    exec(compile(f"def load(tables):\n{body}", filename, "exec"), namespace)
    return namespace["load"]


def grow_slowly(round_, per_round=15):
    for i in range(per_round):
        grow_global_list(round_ * per_round + i)


def beside_static_lines(held=0):
    """A watcher of 20 sites at most, sampled once, then sixty lines of
    20 KB that never grow (kept in the returned list) and *held* items of
    the list that will leak."""
    watcher = LeakWatcher(interval=60, max_sites=20)
    tables = []
    watcher.sample()
    static_lines(60, 20_000)(tables)
    for i in range(held):
        grow_global_list(i)
    return watcher, tables


def test_a_leak_smaller_than_every_site_beyond_the_cap_is_still_found(steady_clock):
    # Sixty lines of 20 KB that never grow, three times the cap, and one
    # that leaks 1.3 KB a round: it never comes near the 20 biggest, and
    # was never kept, so never a suspect (a wrong "no leak").
    watcher, tables = beside_static_lines()
    for round_ in range(12):
        grow_slowly(round_)
        watcher.sample()
    watcher.stop()
    samples = watcher.samples
    assert all(len(s.figures) <= 20 for s in samples)
    leak = line_of(grow_global_list, 1)
    found = [(s.filename, s.lineno) for s in watcher.suspects()]
    assert found[:1] == [(__file__, leak)], found
    # Kept from the first sample it grew in, with the one before it: a
    # series with no hole, whose growth is what the line gained.
    held = [
        any((k[-1].filename, k[-1].lineno) == (__file__, leak) for k in s.figures)
        for s in samples
    ]
    assert held[1:] == [True] * (len(samples) - 1), held


def test_a_leak_that_grows_every_other_sample_keeps_its_place(steady_clock):
    # Between its bursts the leak does not grow: it must not lose its place
    # to the static lines (a hole in its series reads as memory given back
    # and gained again: churn).  It started with a part far bigger than
    # what it gains, so its series must also start where it truly was.
    watcher, tables = beside_static_lines(held=100)  # 8 KB before it starts
    watcher.sample()
    for round_ in range(16):
        if round_ % 2 == 0:
            grow_slowly(round_, per_round=30)
        watcher.sample()
    watcher.stop()
    assert all(len(s.figures) <= 20 for s in watcher.samples)
    leak = (__file__, line_of(grow_global_list, 1))
    assert [(s.filename, s.lineno) for s in watcher.suspects()][:1] == [leak]


def test_a_leak_that_starts_late_beside_many_static_lines_is_found(steady_clock):
    watcher, tables = beside_static_lines(held=100)  # 8 KB, then quiet
    for _ in range(6):
        watcher.sample()
    for round_ in range(12):
        grow_slowly(round_)
        watcher.sample()
    watcher.stop()
    leak = (__file__, line_of(grow_global_list, 1))
    assert [(s.filename, s.lineno) for s in watcher.suspects()][:1] == [leak]


@pytest.mark.parametrize("starter", ["watcher", "attribution"])
def test_what_classifying_files_needs_is_ready_before_the_sampling_thread_runs(
    starter,
):
    # An import from the sampling thread (sysconfig's, for the library
    # roots) waits for the GIL at each file it reads while the program
    # computes: the second sample of an asyncio program took 2 s on 3.11.
    from pyleakhunt import userframe
    from pyleakhunt.web import attribution

    userframe._library_roots.cache_clear()
    if starter == "watcher":
        watcher = LeakWatcher(interval=3600).start()
        stop = watcher.stop
    else:
        attribution.reset()
        hunt = attribution.shared(interval=3600)
        hunt.start()
        stop = attribution.reset
    try:
        assert userframe._library_roots.cache_info().currsize == 1
    finally:
        stop()


def test_a_long_series_is_thinned_evenly_over_the_whole_run():
    # Halving the older half at every overflow kept the first sample and
    # the last few: a leak that grew now and then (in bursts, or a list
    # that reallocates) was judged on those few, and missed.
    watcher = LeakWatcher(interval=3600, max_samples=16)
    watcher._ensure_tracing()
    try:
        for i in range(400):
            watcher._add(Sample(float(i), {}), {})
            if len(watcher._samples) > watcher.max_samples:
                watcher._thin()
        times = [s.timestamp for s in watcher.samples]
        assert times[0] == 0.0 and times[-1] == 399.0 and len(times) <= 16
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert max(gaps) <= 3 * 400 / len(times), times
    finally:
        watcher.stop(final_sample=False)
