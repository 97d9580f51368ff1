"""The tracemalloc-compatible module API, against known allocations."""

import sys

import pytest

import pyleakhunt

THIS_FILE = __file__


def make_bytes(n):
    return b"x" * n  # the allocation line of make_bytes


MAKE_BYTES_LINE = make_bytes.__code__.co_firstlineno + 1


def make_many(count, n):
    out = [None] * count
    for i in range(count):
        out[i] = make_bytes(n)
    return out


def nested(depth, n):
    if depth:
        return nested(depth - 1, n)
    return make_bytes(n)


def stat_for_line(snapshot, filename, lineno):
    for stat in snapshot.statistics("lineno"):
        frame = stat.traceback[0]
        if frame.filename == filename and frame.lineno == lineno:
            return stat
    return None


def test_start_stop_and_is_tracing():
    assert not pyleakhunt.is_tracing()
    pyleakhunt.start()
    assert pyleakhunt.is_tracing()
    assert pyleakhunt.get_traceback_limit() == 1
    pyleakhunt.stop()
    assert not pyleakhunt.is_tracing()


@pytest.mark.parametrize("nframe", [0, -1, 65536, 2**30])
def test_start_rejects_bad_nframe_like_tracemalloc(nframe):
    with pytest.raises(ValueError, match=r"range \[1; 65535\]"):
        pyleakhunt.start(nframe)
    assert not pyleakhunt.is_tracing()


def test_start_rejects_non_int():
    with pytest.raises(TypeError):
        pyleakhunt.start("3")


def test_start_while_tracing_changes_only_the_limit(tracing):
    kept = make_bytes(100)
    pyleakhunt.start(5)
    assert pyleakhunt.get_traceback_limit() == 5
    assert pyleakhunt.get_object_traceback(kept) is not None


def test_exact_size_and_count_of_known_allocations(tracing):
    blocks = make_many(1000, 200)
    snapshot = pyleakhunt.take_snapshot()
    stat = stat_for_line(snapshot, THIS_FILE, MAKE_BYTES_LINE)
    assert stat.count == 1000
    assert stat.size == 1000 * sys.getsizeof(blocks[0])


def test_freed_blocks_leave_the_statistics(tracing):
    blocks = make_many(500, 64)
    del blocks
    snapshot = pyleakhunt.take_snapshot(traces=False)
    assert stat_for_line(snapshot, THIS_FILE, MAKE_BYTES_LINE) is None


def test_get_object_traceback_points_at_the_allocating_line(tracing):
    obj = make_bytes(1000)
    traceback = pyleakhunt.get_object_traceback(obj)
    assert len(traceback) == 1
    assert traceback[0].filename == THIS_FILE
    assert traceback[0].lineno == MAKE_BYTES_LINE


def test_traceback_with_25_frames_lists_the_whole_call_chain():
    pyleakhunt.start(25)
    obj = nested(10, 100)
    traceback = pyleakhunt.get_object_traceback(obj)
    frames = list(traceback)  # oldest first
    assert frames[-1].lineno == MAKE_BYTES_LINE
    nested_line = nested.__code__.co_firstlineno
    assert [f.lineno for f in frames[-12:-1]] == [nested_line + 2] * 10 + [
        nested_line + 3
    ]
    assert all(f.filename == THIS_FILE for f in frames[-12:])
    assert len(frames) == min(25, traceback_depth_of_caller() + 12)


def gen_makes(n):
    for i in range(n):
        yield bytearray(3002 + i)


async def coro_makes():
    return bytearray(3010)


def objects_from_many_kinds_of_frames():
    """Objects made in frames of each kind the interpreter pushes: plain
    calls, a generator resumed by a C loop, a coroutine driven by send(), a
    class body, comprehensions, Python called back from C (sorted's key,
    map), and a frame deep in a recursion."""

    class MadeInClassBody:
        made = bytearray(3001)

    kept = [make_bytes(3000), MadeInClassBody.made]
    kept += list(gen_makes(3))
    coro = coro_makes()
    try:
        coro.send(None)
    except StopIteration as done:
        kept.append(done.value)
    kept += [bytearray(3020 + i) for i in range(2)]
    made_by_key = []
    sorted(range(2), key=lambda i: made_by_key.append(bytearray(3040 + i)) or i)
    kept += made_by_key
    kept += list(map(lambda i: bytearray(3050 + i), range(2)))
    kept.append(nested(20, 3060))
    return kept


@pytest.mark.parametrize("nframe", [1, 25])
def test_tracebacks_match_tracemalloc_frame_for_frame(nframe):
    # Both trace the same blocks (tracemalloc below, pyleakhunt on top):
    # every frame, line and total depth must be the same, whatever the
    # frames the interpreter pushes of its own (entry, shim, base frames),
    # within the limit and beyond it (only counted).
    import tracemalloc

    tracemalloc.start(nframe)
    try:
        pyleakhunt.start(nframe)
        kept = objects_from_many_kinds_of_frames()
        for obj in kept:
            ours = pyleakhunt.get_object_traceback(obj)
            theirs = tracemalloc.get_object_traceback(obj)
            assert theirs is not None and ours is not None, obj
            assert [(f.filename, f.lineno) for f in ours] == [
                (f.filename, f.lineno) for f in theirs
            ], obj
            assert ours.total_nframe == theirs.total_nframe, obj
        pyleakhunt.stop()
    finally:
        tracemalloc.stop()
    assert len(kept) == 13


def traceback_depth_of_caller():
    depth = 0
    frame = sys._getframe(2)
    while frame is not None:
        depth += 1
        frame = frame.f_back
    return depth


def test_total_nframe_counts_frames_beyond_the_limit():
    pyleakhunt.start(1)
    nested(30, 10)
    kept = nested(30, 10)
    snapshot = pyleakhunt.take_snapshot()
    trace = next(t for t in snapshot.traces if t.size == sys.getsizeof(kept))
    assert len(trace.traceback) == 1
    assert trace.traceback.total_nframe >= 32


def test_total_nframe_is_none_and_depths_merge_when_not_counted():
    pyleakhunt.start(1, total_nframe=False)
    shallow = nested(2, 100_003)
    deep = nested(30, 100_003)
    snapshot = pyleakhunt.take_snapshot()
    traces = [t for t in snapshot.traces if t.size == sys.getsizeof(deep)]
    assert len(traces) == 2
    assert {t.traceback.total_nframe for t in traces} == {None}
    stats = [
        s
        for s in snapshot.statistics("traceback")
        if s.traceback[0].lineno == MAKE_BYTES_LINE
    ]
    assert len(stats) == 1 and stats[0].count == 2
    del shallow, deep


def test_starting_again_turns_the_total_nframe_count_back_on():
    pyleakhunt.start(1, total_nframe=False)
    uncounted = nested(30, 100_019)
    pyleakhunt.start(1)
    counted = nested(30, 100_019)
    snapshot = pyleakhunt.take_snapshot()
    depths = {
        t.traceback.total_nframe
        for t in snapshot.traces
        if t.size == sys.getsizeof(counted)
    }
    assert None in depths and max(d for d in depths if d is not None) >= 32
    del uncounted, counted


def test_get_traced_memory_follows_allocations(tracing):
    before, _ = pyleakhunt.get_traced_memory()
    big = make_bytes(1 << 20)
    current, peak = pyleakhunt.get_traced_memory()
    assert current - before >= 1 << 20
    del big
    after, peak_after = pyleakhunt.get_traced_memory()
    assert current - after >= (1 << 20) - 2048
    assert peak_after >= current


def test_reset_peak_lowers_the_peak(tracing):
    big = make_bytes(4 << 20)
    del big
    _, peak = pyleakhunt.get_traced_memory()
    pyleakhunt.reset_peak()
    current, new_peak = pyleakhunt.get_traced_memory()
    assert new_peak < peak
    assert new_peak >= current


def test_clear_traces_forgets_blocks_but_keeps_tracing(tracing):
    obj = make_bytes(100)
    pyleakhunt.clear_traces()
    assert pyleakhunt.get_object_traceback(obj) is None
    assert pyleakhunt.is_tracing()
    obj2 = make_bytes(100)
    assert pyleakhunt.get_object_traceback(obj2) is not None


def test_stop_resets_traced_memory():
    pyleakhunt.start()
    make_many(10, 100)
    pyleakhunt.stop()
    assert pyleakhunt.get_traced_memory() == (0, 0)


def test_get_tracemalloc_memory_grows_with_the_tables(tracing):
    small = pyleakhunt.get_tracemalloc_memory()
    keep = [[i] for i in range(200_000)]
    assert pyleakhunt.get_tracemalloc_memory() > small
    assert len(keep) == 200_000


def test_get_stats_reports_the_tracer_counters(tracing):
    keep = make_many(100, 10)
    stats = pyleakhunt.get_stats()
    for key in (
        "alloc_events",
        "free_events",
        "live_blocks",
        "unique_tracebacks",
        "lost_blocks",
        "tracer_memory",
    ):
        assert key in stats
    assert stats["alloc_events"] >= 100
    assert stats["live_blocks"] >= 100
    assert stats["lost_blocks"] == 0
    assert stats["tracing"] is True
    assert len(keep) == 100


@pytest.mark.skipif(
    sys.version_info < (3, 13),
    reason="before 3.13 there is no reference tracer, so no object is looked up",
)
def test_the_tracers_own_work_looks_up_only_objects_from_free_lists(tracing):
    # Objects the tracer's own analysis creates (a snapshot makes hundreds
    # of thousands) are new, in blocks it left out: each must not cost a
    # search of the block table.  Only those reused from free lists (a
    # few thousand at most) are looked up, to move a recorded block.
    was_paused = pyleakhunt._core.pause_thread(True)
    try:
        before = pyleakhunt.get_stats()["reuse_lookups"]
        made = [(i, str(i)) for i in range(1000, 51_000)]
        lookups = pyleakhunt.get_stats()["reuse_lookups"] - before
    finally:
        pyleakhunt._core.pause_thread(was_paused)
    assert len(made) == 50_000
    assert lookups < 10_000


def test_take_snapshot_requires_tracing():
    with pytest.raises(RuntimeError, match="must be tracing"):
        pyleakhunt.take_snapshot()


def test_get_traces_is_empty_when_not_tracing():
    assert pyleakhunt._get_traces() == []


def test_full_and_aggregated_snapshots_agree(tracing):
    keep = make_many(300, 50)
    full = pyleakhunt.take_snapshot()
    aggregated = pyleakhunt.take_snapshot(traces=False)
    # The two snapshots are taken at slightly different moments; compare
    # the sites this test controls, and the shape of everything.
    assert stat_for_line(full, THIS_FILE, MAKE_BYTES_LINE) == stat_for_line(
        aggregated, THIS_FILE, MAKE_BYTES_LINE
    )
    assert len(keep) == 300


def test_aggregated_snapshot_refuses_traces_with_a_clear_error(tracing):
    snapshot = pyleakhunt.take_snapshot(traces=False)
    assert snapshot.is_aggregated
    with pytest.raises(pyleakhunt.AggregatedSnapshotError, match="take_snapshot"):
        _ = snapshot.traces


def test_full_snapshot_traces_match_blocks(tracing):
    keep = make_many(50, 300)
    snapshot = pyleakhunt.take_snapshot()
    mine = [
        t
        for t in snapshot.traces
        if t.traceback[0].lineno == MAKE_BYTES_LINE
        and t.traceback[0].filename == THIS_FILE
    ]
    assert len(mine) == 50
    assert {t.size for t in mine} == {sys.getsizeof(keep[0])}
    assert all(t.domain == 0 for t in mine)
