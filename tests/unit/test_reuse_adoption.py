"""Objects reused in blocks that nothing recorded are recorded at the line
that reused them (3.13+): a leak of small tuples made in blocks that the
watcher's own work left on the free lists was invisible."""

import gc
import sys

import pytest

import pyleakhunt
from pyleakhunt import _core

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 13),
    reason="before 3.13 no extension is told that CPython reused an object "
    "(the leak check empties the free lists instead: test_freelist.py)",
)


def make_tuple(n):
    return (n, "x")


def make_list(n):
    return [n]


def make_dict(n):
    return {"k": n}


def make_float(n):
    return n + 0.5


def make_int(n):
    return n + (1 << 20)


def make_complex(n):
    return n * 1j


MAKERS = [make_tuple, make_list, make_dict, make_float, make_int, make_complex]


def fill_free_lists_unrecorded():
    """Objects of every kind made and dropped by a paused thread, as the
    watcher's are: their blocks wait on the free lists, never recorded."""
    was = _core.pause_thread(True)
    try:
        junk = [[make(i) for make in MAKERS] for i in range(300)]
        del junk
    finally:
        _core.pause_thread(was)


@pytest.fixture
def tracing():
    gc.collect()
    pyleakhunt.start(1)
    try:
        yield
    finally:
        pyleakhunt.stop()


@pytest.mark.parametrize("make", MAKERS, ids=lambda make: make.__name__[5:])
def test_an_object_reused_in_an_unrecorded_block_is_traced_at_its_line(tracing, make):
    fill_free_lists_unrecorded()
    kept = [make(i) for i in range(50)]
    line = make.__code__.co_firstlineno + 1
    lines = [pyleakhunt.get_object_traceback(obj) for obj in kept]
    assert all(tb is not None and tb[0].lineno == line for tb in lines), lines
    snapshot = pyleakhunt.take_snapshot()
    stats = snapshot.filter_traces(
        [pyleakhunt.Filter(True, __file__, line)]
    ).statistics("lineno")
    assert stats and stats[0].count >= 50


def test_a_paused_thread_adopts_nothing(tracing):
    fill_free_lists_unrecorded()
    was = _core.pause_thread(True)
    try:
        before = pyleakhunt.get_stats()["adopted_blocks"]
        kept = [make_tuple(i) for i in range(50)]
        after = pyleakhunt.get_stats()["adopted_blocks"]
    finally:
        _core.pause_thread(was)
    assert len(kept) == 50
    assert after == before  # its own allocations are not recorded either


def test_adopted_blocks_are_forgotten_when_freed(tracing):
    fill_free_lists_unrecorded()
    gc.collect()
    first = pyleakhunt.get_traced_memory()[0]
    kept = [make_tuple(i) for i in range(200)]
    grown = pyleakhunt.get_traced_memory()[0]
    assert grown - first >= 200 * 40
    del kept
    gc.collect()  # empties the free lists: the blocks are freed
    assert pyleakhunt.get_traced_memory()[0] - first < 200 * 40 / 4


def churn_dicts():
    rows = [{"id": j, "name": "row %d" % j} for j in range(20)]  # churn
    return len(rows)


CHURN_LINE = churn_dicts.__code__.co_firstlineno + 1


@pyleakhunt.snapshot.untraced
def churn_line_size():
    """What the churning line holds, read as a watcher reads it: by the
    tracer's own work, which records nothing."""
    stats = pyleakhunt.take_snapshot().statistics("lineno")
    return sum(
        s.size
        for s in stats
        if s.traceback[0].filename == __file__ and s.traceback[0].lineno == CHURN_LINE
    )


def test_a_line_that_only_churns_dicts_does_not_grow_with_the_samples_taken(tracing):
    # Each snapshot freed a few more dicts than it took into their free
    # list; the churning line's next dicts were made in them and adopted,
    # and the line grew by two dicts a sample until the list was full.
    for _ in range(5):
        churn_dicts()
        churn_line_size()
    start = churn_line_size()
    for _ in range(40):
        churn_dicts()
        end = churn_line_size()
    assert end - start <= 4 * 64, (start, end)


#: The same, as the tracer's own work runs: `snapshot.untraced`.
fill_free_lists_untraced = pyleakhunt.snapshot.untraced(fill_free_lists_unrecorded)


def test_the_tracers_work_gives_back_what_it_freed_into_the_free_lists(tracing):
    gc.collect()  # empties the free lists
    before = _core.free_list_lengths()
    fill_free_lists_unrecorded()  # paused only: they stay
    grown = _core.free_list_lengths()
    _core.trim_free_lists(before)
    trimmed = _core.free_list_lengths()
    fill_free_lists_untraced()
    untraced = _core.free_list_lengths()
    # (Read before anything else runs: the asserts free objects too.)
    assert sum(grown) >= sum(before) + 500
    assert all(t <= b for t, b in zip(trimmed, before))
    assert all(u <= b for u, b in zip(untraced, before))


def test_trimming_the_free_lists_refuses_what_is_not_their_lengths():
    with pytest.raises(TypeError):
        _core.trim_free_lists([1, 2])
    with pytest.raises(TypeError):
        _core.trim_free_lists(("a",))
    _core.trim_free_lists(())  # nothing to give back


def test_a_length_below_zero_leaves_its_free_list_as_it_is(tracing):
    # From 3.14 a turned-off list (dict key tables) has length -1, and is
    # left so; 3.13 read any such length as "trim everything".
    below_zero = (-1,) * 64  # made before the lengths are read
    gc.collect()
    fill_free_lists_unrecorded()
    grown = _core.free_list_lengths()
    _core.trim_free_lists(below_zero[: len(grown)])
    after = _core.free_list_lengths()
    # (Reading the lengths makes a few ints, from their free list.)
    assert sum(grown) >= 500
    assert all(a >= g - 4 for a, g in zip(after, grown)), (grown, after)
