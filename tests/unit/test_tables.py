"""The tracer's own tables: growth, big blocks, and no memory left behind."""

import ctypes
import gc
import random
import sys

import pytest

import pyleakhunt
from pyleakhunt import _core


def capi():
    """The C API from pyleakhunt.h, called with the GIL held."""
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    address = get(_core._C_API, b"pyleakhunt._core._C_API")

    class API(ctypes.Structure):
        _fields_ = [
            ("version", ctypes.c_int),
            (
                "track",
                ctypes.PYFUNCTYPE(
                    ctypes.c_int, ctypes.c_uint, ctypes.c_size_t, ctypes.c_size_t
                ),
            ),
            (
                "untrack",
                ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_uint, ctypes.c_size_t),
            ),
            ("is_tracing", ctypes.PYFUNCTYPE(ctypes.c_int)),
        ]

    return API.from_address(address)


def test_stop_releases_every_byte_the_tracer_allocated():
    pyleakhunt.start(25)
    keep = [{"k": i} for i in range(300_000)]  # forces the table to grow
    assert _core.get_tracemalloc_memory() > 0
    pyleakhunt.stop()
    assert _core.get_tracemalloc_memory() == 0
    assert len(keep) == 300_000


def test_clear_traces_releases_the_tables_memory():
    pyleakhunt.start(1)
    keep = [[i] for i in range(200_000)]
    grown = _core.get_tracemalloc_memory()
    pyleakhunt.clear_traces()
    assert _core.get_tracemalloc_memory() < grown // 4
    assert len(keep) == 200_000


def test_the_block_table_grows_and_keeps_every_block():
    pyleakhunt.start(1)
    keep = [[i] for i in range(500_000)]
    stats = pyleakhunt.get_stats()
    assert stats["live_blocks"] >= 500_000
    assert stats["block_table_capacity"] >= stats["live_blocks"]
    assert stats["lost_blocks"] == 0
    freed = keep[:250_000]
    del keep[:250_000]
    del freed
    assert pyleakhunt.get_stats()["live_blocks"] < stats["live_blocks"] - 240_000


def test_blocks_of_4_gib_and_more_keep_their_exact_size():
    api = capi()
    pyleakhunt.start(1)
    huge = 5 << 30
    fake = 0x7F0000001000  # never dereferenced: only recorded
    assert api.track(0, fake, huge) == 0
    current, _ = pyleakhunt.get_traced_memory()
    assert current >= huge
    sizes = [t.size for t in pyleakhunt.take_snapshot().traces]
    assert huge in sizes
    assert api.untrack(0, fake) == 0
    assert pyleakhunt.get_traced_memory()[0] < huge


def test_a_reused_address_replaces_the_old_record():
    api = capi()
    pyleakhunt.start(1)
    fake = 0x7F0000002000
    api.track(0, fake, 100)
    api.track(0, fake, 300)  # freed behind our back, then reused
    sizes = [t.size for t in pyleakhunt.take_snapshot().traces]
    assert 300 in sizes and 100 not in sizes
    api.untrack(0, fake)


def track_all(api, base, sizes):
    """Track a fake block of each size at base + 16 * i; returns the line
    the records carry."""
    # The addresses are made beforehand: an int made on the tracking line
    # would be recorded there too, and 3.14+ keeps freed ints on a free
    # list, so one would still be live when the records are listed.
    addresses = [base + 16 * i for i in range(len(sizes))]
    for address, size in zip(addresses, sizes):
        assert api.track(0, address, size) == 0
    return sys._getframe().f_lineno - 1


def tracked_sizes(line):
    """Sizes of the live records made at *line* of this file.

    A full collection first empties CPython's free lists: the call's
    argument tuple, made at that line too, may wait on one (3.13+ records
    it when it reuses a block that was never recorded).
    """
    gc.collect()
    return sorted(
        t.size
        for t in pyleakhunt.take_snapshot().traces
        if (t.traceback[0].filename, t.traceback[0].lineno) == (__file__, line)
    )


def test_records_moved_out_of_the_nursery_stay_exact():
    # Far more blocks than the nursery holds: most records move on to the
    # main table, and each is found again there.
    api = capi()
    pyleakhunt.start(1)
    base, sizes = 0x7F0000100000, [1000 + i for i in range(5_000)]
    line = track_all(api, base, sizes)
    assert tracked_sizes(line) == sizes
    for i in range(0, len(sizes), 2):
        api.untrack(0, base + 16 * i)
    assert tracked_sizes(line) == sizes[1::2]
    for i in range(1, len(sizes), 2):
        api.untrack(0, base + 16 * i)
    assert tracked_sizes(line) == []


def kept_at(line, size):
    """How many blocks of `size` bytes this file's `line` holds now."""
    snapshot = pyleakhunt.take_snapshot()
    return sum(
        1
        for trace in snapshot.traces
        if trace.traceback[-1].filename == __file__
        and trace.traceback[-1].lineno == line
        and trace.size == size
    )


@pytest.mark.skipif(
    sys.version_info < (3, 13),
    reason="from 3.13 an object reused from a free list has its record moved "
    "(the reference tracer); before, start() keeps those free lists empty",
)
def test_objects_reused_round_after_round_keep_their_line_and_others_their_blocks():
    # The record of an object reused from a free list moves into the
    # nursery, where its next reuse finds it, and the block that held the
    # slot moves on as an allocation would move it.  Far more live blocks
    # than the nursery holds, and new ones between the rounds, so that
    # every way a record can move is taken; none may be lost or doubled.
    size = sys.getsizeof(0.5)
    pyleakhunt.start(1)
    filler_line = sys._getframe().f_lineno + 1
    filler = [bytes(100) for _ in range(20_000)]
    floats = []
    for round_ in range(200):
        floats.clear()  # to the free list of floats
        filler.extend(bytes(100) for _ in range(30))
        reused_line = sys._getframe().f_lineno + 1
        floats = [float(round_ * 64 + i) for i in range(40)]
    wrong = [
        f for f in floats if pyleakhunt.get_object_traceback(f)[0].lineno != reused_line
    ]
    assert wrong == []
    assert kept_at(reused_line, size) == 40
    assert kept_at(filler_line, sys.getsizeof(bytes(100))) == 20_000
    assert pyleakhunt.get_stats()["lost_blocks"] == 0
    del filler  # (dead floats wait on their free list, counted as before)
    assert kept_at(filler_line, sys.getsizeof(bytes(100))) == 0


def test_blocks_freed_long_after_leaving_the_nursery_are_each_found():
    # The hooks' common case moves a block out of the nursery to its home
    # slot of the main table, and frees it there, on short paths; a free
    # that missed its record (or cleared a slot that a displaced record
    # still needs) would leave blocks counted after the last free.
    size = sys.getsizeof(bytes(200))
    pyleakhunt.start(1)
    line = sys._getframe().f_lineno + 1
    keep = [bytes(200) for _ in range(60_000)]
    assert kept_at(line, size) == 60_000
    del keep[::2]
    assert kept_at(line, size) == 30_000
    del keep[::-3]
    assert kept_at(line, size) == 20_000
    keep.clear()
    assert kept_at(line, size) == 0
    assert pyleakhunt.get_stats()["lost_blocks"] == 0


def test_neighbouring_blocks_of_mixed_small_sizes_are_each_found():
    # The records of blocks in the same 128 bytes share a line of the main
    # table (block_home in tables.c), each in a slot of its own when it
    # can: small blocks of many sizes side by side, freed in a random
    # order, must each be found, in whatever slot of the line or after it
    # their record went.
    pyleakhunt.start(1)
    keep = [None] * 40_000
    line = sys._getframe().f_lineno + 2
    for i in range(len(keep)):
        keep[i] = bytes(2 + i % 90)
    for _ in freed_in_random_order(keep, 14, (10_000, 25_000, 40_000)):
        live = [b for b in keep if b is not None]
        assert traced_at(line) == (len(live), sum(map(sys.getsizeof, live)))
    assert pyleakhunt.get_stats()["lost_blocks"] == 0


def test_blocks_packed_sixteen_bytes_apart_are_each_found():
    # The records of the blocks in one 128-byte chunk have their homes in
    # one line of four slots (block_home in tables.c).  object() instances
    # are 16 bytes, the densest a heap gets: two of them share each home,
    # and the lines overflow into the next ones.  Freed in a random order,
    # with the backward shifts that follow, each must still be found.
    pyleakhunt.start(1)
    keep = [None] * 60_000
    line = sys._getframe().f_lineno + 2
    for i in range(len(keep)):
        keep[i] = object()
    assert sys.getsizeof(keep[0]) == 16
    for _ in freed_in_random_order(keep, 16, (0, 20_000, 45_000, 60_000)):
        live = sum(o is not None for o in keep)
        assert traced_at(line) == (live, 16 * live)
    assert pyleakhunt.get_stats()["lost_blocks"] == 0


def freed_in_random_order(keep, seed, stops):
    """Empty `keep`'s slots in a random order (by `seed`), pausing once
    the first `stop` of that order are empty, for each of `stops`."""
    order = list(range(len(keep)))
    random.Random(seed).shuffle(order)
    for stop in stops:
        for i in order[:stop]:
            keep[i] = None
        yield stop


def traced_at(line):
    """The count and bytes of the blocks this file's `line` holds now."""
    traces = [
        trace
        for trace in pyleakhunt.take_snapshot().traces
        if trace.traceback[-1].filename == __file__
        and trace.traceback[-1].lineno == line
    ]
    return len(traces), sum(trace.size for trace in traces)


def test_the_block_that_left_the_nursery_last_is_found_by_lookups():
    # The block moved out of the nursery last waits in a slot of its own
    # (the pending one) until the next one moves on: lookups look there
    # too.  Paused, this thread records nothing, so nothing else moves on
    # while every block is looked up.
    pyleakhunt.start(1)
    keep = [bytes(200) for _ in range(10_000)]
    _core.pause_thread(True)
    try:
        missing = [
            i for i, b in enumerate(keep) if pyleakhunt.get_object_traceback(b) is None
        ]
    finally:
        _core.pause_thread(False)
    assert missing == []


def test_a_block_freed_long_after_it_left_the_nursery_is_uncounted_at_once():
    # Its record is in the main table, or in the pending slot (tables.h):
    # the free takes it out before anything else looks.  Counted at its
    # line, not in the total: another thread of the test process may
    # allocate in between.
    size = sys.getsizeof(bytes(1000))
    pyleakhunt.start(1)
    keep = [None] * 10_000
    line = sys._getframe().f_lineno + 2
    for i in range(len(keep)):
        keep[i] = bytes(1000)
    for _ in range(100):
        del keep[0]  # the oldest: it left the nursery long ago
        assert counted_at(line) == (len(keep), len(keep) * size)
    assert kept_at(line, size) == len(keep)


def counted_at(line):
    """The count and bytes of this file's `line`, from the sites' totals."""
    for stat in pyleakhunt.take_snapshot(traces=False).statistics("lineno"):
        frame = stat.traceback[0]
        if frame.filename == __file__ and frame.lineno == line:
            return stat.count, stat.size
    return 0, 0


def test_a_reused_address_replaces_a_record_already_in_the_main_table():
    # The first records leave the nursery for the main table; then their
    # addresses come back (freed behind our back) and the new records
    # must replace them, whether they are still young or move on too.
    api = capi()
    pyleakhunt.start(1)
    base, count = 0x7F0000400000, 3_000
    line = track_all(api, base, [1000 + i for i in range(count)])
    track_all(api, base, [5000 + i for i in range(count)])
    assert tracked_sizes(line) == [5000 + i for i in range(count)]
    for i in range(count):
        api.untrack(0, base + 16 * i)
    assert tracked_sizes(line) == []
    assert pyleakhunt.get_stats()["lost_blocks"] == 0


@pytest.mark.skipif(
    sys.version_info < (3, 13), reason="no reference tracer before 3.13"
)
def test_an_address_found_absent_then_recorded_is_moved_when_reused():
    # A lookup that misses remembers the address (the absent memo), so that
    # the reference tracer skips objects never recorded without the lock.
    # Recording the address must make it forget: otherwise an object reused
    # from a free list in that block keeps the record's older site.
    api = capi()
    base = 1.25
    before = base * 3.0  # made before start(): never recorded
    address = id(before)
    pyleakhunt.start(1)
    assert pyleakhunt.get_object_traceback(before) is None  # the miss
    assert api.track(0, address, sys.getsizeof(before)) == 0
    del before  # a float goes to its free list, its block still live
    after = base * 5.0
    line = sys._getframe().f_lineno - 1
    if id(after) != address:
        pytest.skip("the float free list did not hand the same block back")
    traceback = pyleakhunt.get_object_traceback(after)
    assert traceback is not None and traceback[0].lineno == line, traceback
    api.untrack(0, address)


def test_a_null_address_is_refused_and_leaves_the_tables_intact():
    api = capi()
    pyleakhunt.start(1)
    base = 0x7F0000800000
    line = track_all(api, base, [777, 778])
    for domain in (0, 5):
        assert api.track(domain, 0, 123) == -1
        assert api.untrack(domain, 0) == 0
    assert tracked_sizes(line) == [777, 778]
    assert 123 not in [t.size for t in pyleakhunt.take_snapshot().traces]
    api.untrack(0, base)
    api.untrack(0, base + 16)
    assert tracked_sizes(line) == []


def test_sites_with_no_live_blocks_release_their_code_objects():
    namespace = {}
    exec(
        compile(
            "def make():\n    return [object() for _ in range(50)]\n", "<dyn>", "exec"
        ),
        namespace,
    )
    code = namespace["make"].__code__
    namespace["make"]()  # a first call: CPython may cache a frame (3.9, 3.10)
    before = sys.getrefcount(code)
    pyleakhunt.start(5)
    namespace["make"]()  # allocates and frees: its sites end up empty
    assert sys.getrefcount(code) > before  # the sites keep the code alive
    gc.collect()  # the list, if it went to a free list, is freed
    pyleakhunt.take_snapshot(traces=False)  # forgets the empty sites
    assert sys.getrefcount(code) == before
    kept = namespace["make"]()  # and new sites come back when needed
    snapshot = pyleakhunt.take_snapshot(traces=False)
    assert any(s.frames[0][0] == "<dyn>" and s.count >= 50 for s in snapshot.sites)
    assert len(kept) == 50


def string_size(index):
    """The size of the string that function `index` of MANY_SITES keeps."""
    return sys.getsizeof("0" * (10 + index % 90))


# Enough distinct allocation lines to overflow the site cache (2048 entries).
MANY_SITES = "".join(
    "def f%d(keep, n):\n    keep.append(str(n) * %d)\n" % (i, 10 + i % 90)
    for i in range(3000)
)


def figures_by_line(nframe, **start_options):
    """Size and count of the strings that each line of MANY_SITES keeps.

    Only the program's own blocks are counted: the suite runs in one
    process, where an earlier test's thread, finalizer or C callback may
    allocate while a line of MANY_SITES is on top, and such a block is
    rightly counted there.  Those blocks are never a string of the size
    that line makes."""
    namespace = {}
    exec(compile(MANY_SITES, "many_sites.py", "exec"), namespace)
    functions = [namespace["f%d" % i] for i in range(3000)]
    pyleakhunt.start(nframe, **start_options)
    keep = []
    for n in range(3):
        for function in functions:
            function(keep, n)
    del keep[::7]  # frees of blocks long since moved out of the nursery
    snapshot = pyleakhunt.take_snapshot()
    pyleakhunt.stop()
    figures = {}
    for trace in snapshot.traces:
        frame = trace.traceback[-1]  # the most recent frame
        if frame.filename != "many_sites.py" or frame.lineno % 2:
            continue
        if trace.size == string_size(frame.lineno // 2 - 1):
            size, count = figures.get(frame.lineno, (0, 0))
            figures[frame.lineno] = (size + trace.size, count + 1)
    return figures


def expected_figures():
    """What figures_by_line must find: every string not deleted."""
    figures = {}
    for n in range(3):
        for index in range(3000):
            if (n * 3000 + index) % 7:
                line = 2 * index + 2
                size, count = figures.get(line, (0, 0))
                figures[line] = (size + string_size(index), count + 1)
    return figures


def test_the_hooks_common_case_path_gives_the_general_paths_figures():
    # One frame takes the hooks' common-case path (site cache hits, free
    # nursery slots), with or without depths; two frames take the general
    # one for every event.  Each must find every string the program keeps.
    expected = expected_figures()
    assert len(expected) == 3000
    assert figures_by_line(2) == expected
    assert figures_by_line(1) == expected
    assert figures_by_line(1, total_nframe=False) == expected
