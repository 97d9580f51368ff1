"""Snapshots: full and aggregated kinds, top, diff, filters, files."""

import collections
import inspect
import json
import logging
import logging.handlers

import pytest

import pyleakhunt
from pyleakhunt import Filter, Snapshot, Traceback
from pyleakhunt._raw import RawSite, RawSnapshot
from pyleakhunt.userframe import is_user_file, library_path

KEYS = [
    ("lineno", False),
    ("filename", False),
    ("traceback", False),
    ("userline", False),
    ("lineno", True),
    ("filename", True),
]


def allocate_in_a(n):
    return [str(i) * 3 for i in range(n)]


def allocate_in_b(n):
    return [{"k": i} for i in range(n)]


def aggregated_twin(full):
    """The aggregated snapshot of the same moment as *full*."""
    raw = full.raw
    return Snapshot._from_raw(RawSnapshot(raw.traceback_limit, list(raw.sites)))


@pytest.mark.parametrize(("key_type", "cumulative"), KEYS)
def test_site_aggregates_equal_the_sum_over_blocks(key_type, cumulative):
    pyleakhunt.start(5)
    keep = allocate_in_a(2000), allocate_in_b(1000)
    full = pyleakhunt.take_snapshot()
    pyleakhunt.stop()
    # tracemalloc's path: group trace tuples one by one.
    by_blocks = Snapshot(list(full.traces._traces), full.traceback_limit)
    assert full.statistics(key_type, cumulative) == by_blocks.statistics(
        key_type, cumulative
    )
    assert aggregated_twin(full).statistics(key_type, cumulative) == (
        by_blocks.statistics(key_type, cumulative)
    )
    assert len(keep) == 2


def test_both_kinds_give_identical_top_diff_and_filters():
    pyleakhunt.start(5)
    first = allocate_in_a(500)
    old_full = pyleakhunt.take_snapshot()
    second = allocate_in_b(800)
    new_full = pyleakhunt.take_snapshot()
    pyleakhunt.stop()
    old_agg, new_agg = aggregated_twin(old_full), aggregated_twin(new_full)
    assert new_full.top(5) == new_agg.top(5)
    assert new_full.diff(old_full) == new_agg.diff(old_agg)
    assert new_full.compare_to(old_full, "traceback") == new_agg.compare_to(
        old_agg, "traceback"
    )
    only_here = [Filter(True, __file__)]
    assert new_full.filter_traces(only_here).top(3) == new_agg.filter_traces(
        only_here
    ).top(3)
    assert len(first) + len(second) == 1300


def test_diff_lists_the_most_growth_first():
    def site(line, size):
        return RawSite(0, (("app.py", line),), 1, 1, size)

    old = Snapshot._from_raw(RawSnapshot(1, [site(1, 1000), site(2, 10)]))
    new = Snapshot._from_raw(RawSnapshot(1, [site(1, 100), site(2, 500), site(3, 200)]))
    diffs = new.diff(old)
    assert [(d.traceback[0].lineno, d.size_diff) for d in diffs] == [
        (2, 490),
        (3, 200),
        (1, -900),
    ]
    # compare_to keeps tracemalloc's order: the biggest change either way.
    assert new.compare_to(old, "lineno")[0].traceback[0].lineno == 1


def test_top_returns_the_n_biggest_statistics():
    sites = [RawSite(0, (("m.py", i),), 1, 1, i * 10) for i in range(1, 30)]
    snapshot = Snapshot._from_raw(RawSnapshot(1, sites))
    top = snapshot.top(3)
    assert [s.traceback[0].lineno for s in top] == [29, 28, 27]
    with pytest.raises(ValueError):
        snapshot.top(-1)


def test_aggregated_snapshot_takes_and_reads_back_from_a_file(tmp_path):
    pyleakhunt.start(3)
    keep = allocate_in_a(300)
    snapshot = pyleakhunt.take_snapshot(traces=False)
    path = tmp_path / "agg.plh"
    snapshot.dump(path)
    loaded = Snapshot.load(path)
    assert loaded.is_aggregated
    assert loaded.top(10) == snapshot.top(10)
    assert loaded.pid == snapshot.pid
    assert len(keep) == 300


def test_full_snapshot_round_trips_its_traces(tmp_path):
    pyleakhunt.start(1)
    keep = allocate_in_b(100)
    snapshot = pyleakhunt.take_snapshot()
    path = tmp_path / "full.plh"
    snapshot.dump(path)
    assert Snapshot.load(path).traces == snapshot.traces
    assert len(keep) == 100


def test_loading_a_pickle_is_refused_with_a_clear_error(tmp_path):
    import tracemalloc

    tracemalloc.start()
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    path = tmp_path / "tm.pickle"
    snapshot.dump(path)
    with pytest.raises(pyleakhunt.fileformat.FileFormatError, match="pickle"):
        Snapshot.load(path)


@pytest.mark.parametrize(("key_type", "cumulative"), KEYS)
def test_top_is_the_head_of_statistics_even_with_ties(key_type, cumulative):
    sites = [
        RawSite(0, ((f"f{i % 7}.py", i % 5), (f"g{i % 3}.py", i % 4)), 2, 1, 64)
        for i in range(200)
    ]
    snapshot = Snapshot._from_raw(RawSnapshot(2, sites))
    for n in (0, 1, 3, 10, 1000):
        assert (
            snapshot.top(n, key_type, cumulative)
            == snapshot.statistics(key_type, cumulative)[:n]
        )


@pytest.mark.parametrize(("key_type", "cumulative"), KEYS)
@pytest.mark.parametrize("lines", ["ascending", "descending", "shuffled"])
def test_top_ranks_many_sites_of_one_size_by_their_frames(key_type, cumulative, lines):
    # Sites of one size tie on their figures, so that only their frames
    # order them: top() ranks them without sorting them all, whatever the
    # order the sites come in; a few bigger ones come first.
    order = list(range(2000))
    if lines == "descending":
        order.reverse()
    elif lines == "shuffled":
        order = [(i * 7919) % 2000 for i in order]
    sites = [
        RawSite(0, ((f"m{i % 3}.py", i), (f"caller{i % 11}.py", i % 13)), 2, 1, 64)
        for i in order
    ]
    big = ((("big.py", i), ("main.py", 1)) for i in range(3))
    sites += [RawSite(0, frames, 2, 1, 1000 + i) for i, frames in enumerate(big)]
    snapshot = Snapshot._from_raw(RawSnapshot(2, sites))
    for n in (1, 3, 4, 10, 100):
        assert (
            snapshot.top(n, key_type, cumulative)
            == snapshot.statistics(key_type, cumulative)[:n]
        )


def test_the_tracers_own_analysis_is_not_traced():
    pyleakhunt.start(1)
    keep = allocate_in_a(1000)
    snapshot = pyleakhunt.take_snapshot(traces=False)
    snapshot.statistics("traceback")
    again = pyleakhunt.take_snapshot(traces=False)
    own = [
        s
        for s in again.sites
        if s.frames[0][0].endswith(("pyleakhunt/snapshot.py", "pyleakhunt/__init__.py"))
    ]
    pyleakhunt.stop()
    assert own == []
    assert len(keep) == 1000


# --------------------------------------------------------------------------
# The userline key: what a library allocates for a line of the program is
# counted under that line (issue 15, item 5)


def keep_parsed_bodies(n):
    kept = []
    for i in range(n):
        body = '{"order": %d, "items": [1, 2, 3], "note": "n%d"}' % (i, i)
        kept.append(json.loads(body))  # the user's line
    return kept


def keep_log_records(n):
    log = logging.getLogger("test_snapshot.userline")
    handler = logging.handlers.BufferingHandler(capacity=10**9)
    log.addHandler(handler)
    log.propagate = False
    try:
        for i in range(n):
            log.warning("order %d shipped", i)  # the user's line
    finally:
        log.removeHandler(handler)
    return handler.buffer


Point = collections.namedtuple("Point", "x label")


def keep_points(n):
    kept = []
    for i in range(n):
        kept.append(Point._make([i * 1000, None]))  # the user's line
    return kept


def user_line(function):
    """The line of *function* marked as the user's."""
    lines, first = inspect.getsourcelines(function)
    (index,) = [i for i, line in enumerate(lines) if "# the user's line" in line]
    return first + index


@pytest.mark.parametrize(
    "keep, library",
    [
        (keep_parsed_bodies, "json/"),
        (keep_log_records, "logging/"),
        (keep_points, "collections/"),
    ],
    ids=["json", "logging", "collections"],
)
def test_userline_counts_what_a_library_allocates_under_the_users_line(keep, library):
    pyleakhunt.start(10)  # the frames run and the pytest plugin record
    old = pyleakhunt.take_snapshot(traces=False)
    kept = keep(2000)
    new = pyleakhunt.take_snapshot(traces=False)
    pyleakhunt.stop()
    assert len(kept) == 2000
    # tracemalloc's lineno key names the library's line...
    by_line = new.statistics("lineno")
    assert not is_user_file(by_line[0].traceback[-1].filename)
    assert library_path(by_line[0].traceback[-1].filename).startswith(library)
    # ... the userline key the program's, with everything allocated for it.
    top = new.statistics("userline")[0]
    frame = top.traceback[-1]
    assert (frame.filename, frame.lineno) == (__file__, user_line(keep))
    assert top.size > by_line[0].size and top.count >= 2000
    assert new.top(1, "userline") == [top]
    grown = new.compare_to(old, "userline")[0]
    assert grown.traceback == top.traceback and grown.size_diff > 0
    assert new.diff(old, "userline")[0] == grown


def test_userline_groups_sites_by_their_most_recent_user_frame():
    json_file = json.decoder.__file__
    sites = [
        RawSite(0, ((json_file, 353), (json.__file__, 346), ("app.py", 7)), 3, 2, 100),
        RawSite(0, ((json_file, 355), ("app.py", 7), ("main.py", 1)), 3, 1, 50),
        RawSite(0, (("app.py", 9), ("main.py", 1)), 2, 1, 20),
        RawSite(0, ((json_file, 353), (json.__file__, 346)), 2, 1, 10),
    ]
    snapshot = Snapshot._from_raw(RawSnapshot(3, sites))
    stats = [
        (str(s.traceback), s.size, s.count) for s in snapshot.statistics("userline")
    ]
    # No user frame at all: the most recent frame stands for itself.
    assert stats == [
        ("app.py:7", 150, 3),
        ("app.py:9", 20, 1),
        ("%s:353" % json_file, 10, 1),
    ]
    with pytest.raises(ValueError, match="cumulative"):
        snapshot.statistics("userline", cumulative=True)


def test_a_traceback_gives_back_the_frames_it_was_made_of():
    frames = (("lib.py", 3), ("app.py", 10), ("main.py", 1))  # most recent first
    traceback = Traceback(frames)
    assert traceback.raw_frames == frames
    assert traceback.raw_frames == tuple(
        (f.filename, f.lineno) for f in reversed(traceback)
    )
    assert Traceback(()).raw_frames == ()
