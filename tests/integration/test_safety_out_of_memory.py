"""The tracer never hurts the program it watches.

The tracer's own memory runs out: the program keeps working and the tables
stay consistent.

Where a crash, a deadlock or the end of the interpreter is what is being
tested, the scenario runs in a child interpreter with a timeout, and the test
asserts on its exit code and its output (helpers.run_python, assert_clean).
"""

from __future__ import annotations

import ctypes
import gc

import pytest
from helpers import (
    capi,
    fresh_function,
    lineno,
)

import pyleakhunt
from pyleakhunt import _core

# --------------------------------------------------------------------------
# 4. The tracer's own memory runs out
# --------------------------------------------------------------------------


def test_program_keeps_working_when_the_tracer_cannot_record_new_sites():
    pyleakhunt.start(3)
    assert pyleakhunt.get_stats()["lost_blocks"] == 0
    make = fresh_function(
        """
        data = [str(i) * 3 for i in range(20000)]
        table = {i: bytes(600) for i in range(500)}
        return data, table
        """
    )
    try:
        _core._fail_after(0)
        data, table = make()
        # The program's values are right, whatever the tracer lost.
        assert len(data) == 20000 and data[12345] == "123451234512345"
        assert sum(len(v) for v in table.values()) == 500 * 600
        lost = pyleakhunt.get_stats()["lost_blocks"]
        assert lost >= 20000, lost
        assert pyleakhunt.get_object_traceback(data[5]) is None
        try:
            pyleakhunt.take_snapshot()  # may not have the memory to copy
        except MemoryError:
            pass
    finally:
        _core._fail_after(-1)
    snap = pyleakhunt.take_snapshot()
    assert snap.lost_blocks >= lost
    assert pyleakhunt.take_snapshot(traces=False).lost_blocks >= lost
    # Recording works again, and the tables are consistent.
    obj, line = bytearray(31_313), lineno()
    assert pyleakhunt.get_object_traceback(obj)[-1].lineno == line
    current = pyleakhunt.get_traced_memory()[0]
    total = sum(t.size for t in pyleakhunt.take_snapshot().traces)
    assert abs(current - total) < 256 * 1024, (current, total)
    del data, table
    # Freeing the blocks it never recorded does not corrupt the accounting.
    current = pyleakhunt.get_traced_memory()[0]
    assert current < 1 << 40, current
    assert abs(current - sum(t.size for t in pyleakhunt.take_snapshot().traces)) < (
        256 * 1024
    )


def test_program_keeps_working_when_the_block_table_cannot_grow():
    pyleakhunt.start(1)
    grow = fresh_function(
        """
        out = []
        for i in range(n):
            out.append(bytes(20))
        return out
        """,
        params="n",
    )
    grow(5000)  # the sites and the table exist: only growing needs memory
    capacity = pyleakhunt.get_stats()["block_table_capacity"]
    try:
        _core._fail_after(0)
        blocks = grow(90000)
        assert len(blocks) == 90000
        assert all(b == bytes(20) for b in blocks[::997])
        stats = pyleakhunt.get_stats()
        assert stats["lost_blocks"] > 0
        assert stats["block_table_capacity"] == capacity
        assert stats["live_blocks"] <= capacity
    finally:
        _core._fail_after(-1)
    snap = pyleakhunt.take_snapshot()
    assert snap.lost_blocks > 0
    assert sum(s.count for s in snap.sites) == len(snap.traces)
    del blocks
    current = pyleakhunt.get_traced_memory()[0]
    assert current < 1 << 40, current
    # The table grows again once memory is back.
    more = grow(90000)
    stats = pyleakhunt.get_stats()
    assert stats["block_table_capacity"] > capacity
    assert stats["live_blocks"] >= 90000
    assert pyleakhunt.get_object_traceback(more[-1]) is not None


@pytest.mark.parametrize("successes", [1, 2, 3, 5, 8, 13, 40, 100])
def test_failures_at_any_point_leave_consistent_tables(successes):
    pyleakhunt.start(4)
    # 200 lines, 200 new sites, and loops that realloc and free.
    lines = ["out = []"]
    lines += [f"out.append([{k}] * ({k} % 9))" for k in range(200)]
    lines += [
        "for i in range(300):",
        "    out.append(str(i) + 'x')",
        "    out.append(bytearray(i % 50))",
        "del out[::3]",
        "return out",
    ]
    make = fresh_function("\n".join(lines), name=f"f{successes}")
    try:
        _core._fail_after(successes)
        values = make()
    finally:
        _core._fail_after(-1)
    assert values == make()  # the same as when nothing fails
    assert len(values) == 533
    assert pyleakhunt.get_stats()["lost_blocks"] > 0
    snap = pyleakhunt.take_snapshot()
    assert snap.lost_blocks > 0
    assert sum(s.count for s in snap.sites) == len(snap.traces)
    assert sum(s.size for s in snap.sites) == sum(t.size for t in snap.traces)
    del values
    gc.collect()
    current = pyleakhunt.get_traced_memory()[0]
    assert current < 1 << 40, current
    assert abs(current - sum(t.size for t in pyleakhunt.take_snapshot().traces)) < (
        256 * 1024
    )
    obj, line = bytes(4242), lineno()
    assert pyleakhunt.get_object_traceback(obj)[-1].lineno == line


def test_capi_track_reports_failure_when_the_tracer_is_out_of_memory():
    api = capi(ctypes.CFUNCTYPE)
    pyleakhunt.start(1)
    lost = pyleakhunt.get_stats()["lost_blocks"]
    try:
        _core._fail_after(0)
        result = api.track(5, 0x7000_0000, 4096)
    finally:
        _core._fail_after(-1)
    assert result == -1
    assert pyleakhunt.get_stats()["lost_blocks"] >= lost + 1
    snap = pyleakhunt.take_snapshot()
    assert not [t for t in snap.traces if t.domain == 5]
    assert snap.lost_blocks >= lost + 1
    assert api.untrack(5, 0x7000_0000) == 0
