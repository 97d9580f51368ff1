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
