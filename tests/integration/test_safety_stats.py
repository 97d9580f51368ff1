"""The tracer never hurts the program it watches.

get_stats(): the tracer's event counters and its own memory.

Where a crash, a deadlock or the end of the interpreter is what is being
tested, the scenario runs in a child interpreter with a timeout, and the test
asserts on its exit code and its output (helpers.run_python, assert_clean).
"""

from __future__ import annotations

import pytest
from helpers import fresh_function

import pyleakhunt
from pyleakhunt import _core

# --------------------------------------------------------------------------
# 8. get_stats()
# --------------------------------------------------------------------------


def test_get_stats_event_counters_increase_with_allocations_and_frees():
    pyleakhunt.start(1)
    first = pyleakhunt.get_stats()
    data = [bytes(64) for _ in range(5000)]
    second = pyleakhunt.get_stats()
    assert second["alloc_events"] - first["alloc_events"] >= 5000
    assert second["live_blocks"] - first["live_blocks"] >= 4900
    del data
    third = pyleakhunt.get_stats()
    assert third["free_events"] - second["free_events"] >= 5000
    assert abs(third["live_blocks"] - first["live_blocks"]) < 200


def test_get_stats_live_blocks_matches_the_snapshot():
    pyleakhunt.start(1)
    keep = [str(i) * 2 for i in range(3000)]
    # The snapshot first: get_stats() itself may make a site after it has
    # counted them (3.14 grows its result dict on a line of its own).
    snap = pyleakhunt.take_snapshot()
    stats = pyleakhunt.get_stats()
    assert abs(stats["live_blocks"] - len(snap.traces)) < 100
    assert stats["unique_tracebacks"] >= len(snap.sites)
    assert len(keep) == 3000


def test_get_stats_counts_unique_tracebacks_and_tracer_memory():
    pyleakhunt.start(1)
    before = pyleakhunt.get_stats()
    assert before["tracer_memory"] > 0
    fns = [fresh_function(f"return [{k}] * 2", name=f"h{k}") for k in range(50)]
    values = [f() for f in fns]
    after = pyleakhunt.get_stats()
    assert after["unique_tracebacks"] - before["unique_tracebacks"] >= 50
    assert after["tracer_memory"] >= before["tracer_memory"]
    assert after["tracer_memory"] == pytest.approx(
        _core.get_tracemalloc_memory(), rel=0.1
    )
    assert after["lost_blocks"] == 0
    assert after["tracing"] is True
    assert values[49] == [49, 49]


def test_get_stats_lost_blocks_is_zero_in_normal_operation():
    pyleakhunt.start(10)
    junk = [{i: [i] * 3} for i in range(20000)]
    junk.clear()
    pyleakhunt.take_snapshot()
    stats = pyleakhunt.get_stats()
    assert stats["lost_blocks"] == 0
    assert pyleakhunt.take_snapshot().lost_blocks == 0
