"""Sampled tracing: unbiased estimates, flagged as such."""

import gc
import itertools
import os
import sys

import pytest

import pyleakhunt


def retain(n):
    return [bytearray(1000) for _ in range(n)]  # the retained site


RETAIN_LINE = retain.__code__.co_firstlineno + 1


def noise(n):
    return [str(i) * 10 for i in range(n)]


def estimate_of_retained(sample_bytes, count):
    pyleakhunt.start(3, sample_bytes=sample_bytes)
    try:
        other = noise(20_000)
        kept = retain(count)
        snapshot = pyleakhunt.take_snapshot(traces=False)
    finally:
        pyleakhunt.stop()
    stats = [
        s
        for s in snapshot.statistics("lineno")
        if s.traceback[0].filename == __file__ and s.traceback[0].lineno == RETAIN_LINE
    ]
    true = sum(sys.getsizeof(b) for b in kept)
    assert len(other) == 20_000
    return snapshot, (stats[0].size if stats else 0), true


def test_sampled_estimates_are_close_to_the_truth():
    errors = []
    for _ in range(7):
        snapshot, estimate, true = estimate_of_retained("16KiB", 20_000)
        errors.append((estimate - true) / true)
    errors.sort()
    assert abs(errors[3]) < 0.10  # the median
    assert all(abs(e) < 0.35 for e in errors)
    assert snapshot.is_estimated
    assert snapshot.sample_bytes == 16 * 1024


def test_counts_are_estimated_too():
    pyleakhunt.start(1, sample_bytes=4096)
    kept = retain(20_000)
    snapshot = pyleakhunt.take_snapshot(traces=False)
    pyleakhunt.stop()
    (stat,) = [
        s
        for s in snapshot.statistics("lineno")
        if s.traceback[0].lineno == RETAIN_LINE and s.traceback[0].filename == __file__
    ]
    # Two blocks per bytearray: the object and its buffer.
    assert 0.8 * 2 * len(kept) < stat.count < 1.2 * 2 * len(kept)


def test_exact_tracing_stays_the_default():
    pyleakhunt.start()
    snapshot = pyleakhunt.take_snapshot(traces=False)
    assert not snapshot.is_estimated
    assert snapshot.sample_bytes == 0
    assert pyleakhunt.get_stats()["sample_bytes"] == 0


def test_each_mode_installs_its_own_hooks_and_a_restart_switches_them():
    # Sampled and exact tracing install different entry points (hooks.c);
    # both must count as ours, and a restart in the other mode must trace
    # in that mode, exactly or estimated.
    from pyleakhunt import _core

    for sample_bytes in (4096, None, 4096):
        pyleakhunt.start(1, sample_bytes=sample_bytes)
        assert _core.hooks_on_top()
        kept = retain(2000)
        snapshot = pyleakhunt.take_snapshot(traces=False)
        assert snapshot.is_estimated == (sample_bytes is not None)
        line = [
            s
            for s in snapshot.statistics("lineno")
            if s.traceback[0].lineno == RETAIN_LINE
        ]
        assert line, "the retained line is missing"
        if sample_bytes is None:
            assert line[0].count >= 2000
        pyleakhunt.stop()
        assert not _core.hooks_on_top()
        del kept


def test_sites_whose_blocks_were_all_freed_are_never_reported():
    def frees_all_it_makes(n):
        # Bytes have no free list, and the ints stay small (immortal): an
        # int over 256 could wait on 3.14's free list, still a live block
        # of its line, as tracemalloc counts it too.
        total = 0
        for _ in itertools.repeat(None, n):
            total = (total + len(bytes(40))) & 127
        return total

    # Run once untraced: at a function's first line CPython may allocate
    # what the code object keeps (from 3.12, its instrumentation data after
    # an earlier test set a trace function: sys.settrace and its removal
    # each make every code object instrument itself again), which is
    # counted at that line for good.  And no collection runs in between
    # (what it makes is counted at whatever line runs then).
    frees_all_it_makes(1)
    gc.collect()
    gc.disable()
    try:
        pyleakhunt.start(1, sample_bytes=256)
        frees_all_it_makes(100_000)
        kept = retain(2_000)
        snapshot = pyleakhunt.take_snapshot(traces=False)
        pyleakhunt.stop()
    finally:
        gc.enable()
    first = frees_all_it_makes.__code__.co_firstlineno
    lines = {
        s.traceback[0].lineno
        for s in snapshot.statistics("lineno")
        if s.traceback[0].filename == __file__
    }
    assert not lines & set(range(first, first + 8))
    assert RETAIN_LINE in lines
    assert len(kept) == 2_000


def test_frees_of_sampled_blocks_are_accounted():
    pyleakhunt.start(1, sample_bytes=1024)
    kept = retain(10_000)
    before = pyleakhunt.get_traced_memory()[0]
    del kept
    after = pyleakhunt.get_traced_memory()[0]
    pyleakhunt.stop()
    assert after < before - 5_000_000


@pytest.mark.parametrize("bad", ["lots", "-1KiB", 0, -5, "1 parsec"])
def test_bad_sample_sizes_are_refused(bad):
    with pytest.raises(ValueError):
        pyleakhunt.start(1, sample_bytes=bad)
    assert not pyleakhunt.is_tracing()


def test_changing_the_rate_while_tracing_is_refused():
    pyleakhunt.start(1, sample_bytes="64KiB")
    with pytest.raises(ValueError, match="stop"):
        pyleakhunt.start(1, sample_bytes="128KiB")
    pyleakhunt.start(5, sample_bytes="64KiB")  # same rate: limit changes
    assert pyleakhunt.get_traceback_limit() == 5


def test_sample_sizes_accept_units():
    pyleakhunt.start(1, sample_bytes="512KiB")
    assert pyleakhunt.get_stats()["sample_bytes"] == 512 * 1024


def test_a_reallocated_block_that_is_not_sampled_leaves_no_stale_record():
    # bytearray growth reallocates; a recorded block whose realloc is not
    # sampled must be forgotten, not put back (its old address is freed).
    pyleakhunt.start(1, sample_bytes=4096)
    arrays = [bytearray() for _ in range(2000)]
    for array in arrays:
        for _ in range(40):
            array.extend(b"x" * 100)
    del arrays, array
    snapshot = pyleakhunt.take_snapshot(traces=False)
    pyleakhunt.stop()
    grow_line = (
        test_a_reallocated_block_that_is_not_sampled_leaves_no_stale_record.__code__.co_firstlineno
        + 7
    )
    left = sum(s.size for s in snapshot.sites if s.frames[0] == (__file__, grow_line))
    assert left == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_children_sample_independently():
    # Each child reports which of its 3000 objects it sampled (about 20).
    # Forked back to back, both start from the parent's generator: unless
    # each reseeds, they choose the same objects.  Independent choices have
    # almost none in common.  (Comparing their size estimates instead
    # failed about one run in a thousand: equal by chance.)
    pyleakhunt.start(1, sample_bytes=8192)
    pipes = [os.pipe() for _ in range(2)]
    pids = []
    for _read_end, write_end in pipes:
        pid = os.fork()
        if pid == 0:  # the child: the same allocations as its sibling
            kept = retain(3000)
            mine = [i for i, b in enumerate(kept) if pyleakhunt.get_object_traceback(b)]
            os.write(write_end, " ".join(map(str, mine)).encode())
            os._exit(0 if kept else 1)
        pids.append(pid)
    chosen = []
    for (read_end, write_end), pid in zip(pipes, pids):
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            chosen.append(set(pipe.read().split()))
        os.waitpid(pid, 0)
    pyleakhunt.stop()
    first, second = chosen
    assert first and second
    assert len(first & second) < min(len(first), len(second)) / 2
