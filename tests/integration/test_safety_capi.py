"""The tracer never hurts the program it watches.

The C API capsule for foreign allocations (src/pyleakhunt.h).

Where a crash, a deadlock or the end of the interpreter is what is being
tested, the scenario runs in a child interpreter with a timeout, and the test
asserts on its exit code and its output (helpers.run_python, assert_clean).
"""

from __future__ import annotations

import ctypes

from helpers import (
    FAKE,
    UNKNOWN,
    assert_clean,
    capi,
    child,
    domain_traces,
    frames_of,
    lineno,
    run_python,
    run_threads,
    traces_of_size,
)

import pyleakhunt
from pyleakhunt import DomainFilter

# --------------------------------------------------------------------------
# 7. The C API capsule
# --------------------------------------------------------------------------


def test_capi_capsule_has_version_1_and_reports_tracing():
    api = capi(ctypes.CFUNCTYPE)
    assert api.version == 1
    assert api.is_tracing() == 0
    pyleakhunt.start(1)
    assert api.is_tracing() == 1
    pyleakhunt.stop()
    assert api.is_tracing() == 0


def test_capi_returns_minus_2_when_not_tracing():
    for prototype in (ctypes.CFUNCTYPE, ctypes.PYFUNCTYPE):
        api = capi(prototype)
        assert api.track(5, FAKE, 100) == -2
        assert api.untrack(5, FAKE) == -2
        assert api.track(0, FAKE, 100) == -2
    pyleakhunt.start(1)
    pyleakhunt.stop()
    api = capi(ctypes.CFUNCTYPE)
    assert api.track(5, FAKE, 100) == -2
    assert api.untrack(5, FAKE) == -2


def test_capi_blocks_tracked_without_the_gil_are_unknown_in_their_domain():
    api = capi(ctypes.CFUNCTYPE)
    pyleakhunt.start(5)
    for i in range(10):
        assert api.track(5, FAKE + 64 * i, 1000 + i) == 0
    snap = pyleakhunt.take_snapshot()
    traces = domain_traces(snap, 5)
    assert sorted(t.size for t in traces) == [1000 + i for i in range(10)]
    assert {frames_of(t) for t in traces} == {UNKNOWN}
    only = snap.filter_traces([DomainFilter(True, 5)])
    assert len(only.traces) == 10
    stats = only.statistics("traceback")
    assert [(s.count, s.size) for s in stats] == [(10, sum(range(1000, 1010)))]
    without = snap.filter_traces([DomainFilter(False, 5)])
    assert not domain_traces(without, 5)
    assert len(without.traces) == len(snap.traces) - 10
    for i in range(10):
        assert api.untrack(5, FAKE + 64 * i) == 0
    assert not domain_traces(pyleakhunt.take_snapshot(), 5)


def test_capi_blocks_tracked_with_the_gil_get_the_callers_traceback():
    api = capi(ctypes.PYFUNCTYPE)
    pyleakhunt.start(1)
    result, line = api.track(5, FAKE, 4321), lineno()
    assert result == 0
    traces = domain_traces(pyleakhunt.take_snapshot(), 5)
    assert [(t.size, frames_of(t)) for t in traces] == [(4321, ((__file__, line),))]
    assert api.untrack(5, FAKE) == 0
    assert not domain_traces(pyleakhunt.take_snapshot(), 5)


def test_capi_traced_memory_includes_foreign_blocks():
    api = capi(ctypes.CFUNCTYPE)
    pyleakhunt.start(1)
    size = 10**9  # nothing is allocated: the block is only declared
    before = pyleakhunt.get_traced_memory()[0]
    assert api.track(9, FAKE, size) == 0
    current, peak = pyleakhunt.get_traced_memory()
    assert abs(current - before - size) < 64 * 1024
    assert peak >= current
    snap = pyleakhunt.take_snapshot(traces=False)
    assert [(s.count, s.size) for s in snap.sites if s.domain == 9] == [(1, size)]
    assert api.untrack(9, FAKE) == 0
    assert abs(pyleakhunt.get_traced_memory()[0] - before) < 64 * 1024


def test_capi_retracking_a_pointer_replaces_its_size():
    api = capi(ctypes.CFUNCTYPE)
    pyleakhunt.start(1)
    before = pyleakhunt.get_traced_memory()[0]
    assert api.track(5, FAKE, 10**8) == 0
    assert api.track(5, FAKE, 3 * 10**8) == 0
    traces = domain_traces(pyleakhunt.take_snapshot(), 5)
    assert [t.size for t in traces] == [3 * 10**8]
    assert abs(pyleakhunt.get_traced_memory()[0] - before - 3 * 10**8) < 64 * 1024
    # The same address in another domain is another block.
    assert api.track(6, FAKE, 7) == 0
    snap = pyleakhunt.take_snapshot()
    assert [t.size for t in domain_traces(snap, 6)] == [7]
    assert [t.size for t in domain_traces(snap, 5)] == [3 * 10**8]
    assert api.untrack(5, FAKE) == 0
    snap = pyleakhunt.take_snapshot()
    assert not domain_traces(snap, 5)
    assert [t.size for t in domain_traces(snap, 6)] == [7]
    assert api.untrack(6, FAKE) == 0
    # Untracking an unknown pointer is harmless.
    assert api.untrack(5, FAKE + 8) == 0
    assert abs(pyleakhunt.get_traced_memory()[0] - before) < 64 * 1024


def test_capi_track_and_untrack_from_many_threads_without_the_gil():
    api = capi(ctypes.CFUNCTYPE)
    nthreads, per_thread = 6, 1000
    pyleakhunt.start(1)
    results = []

    def worker(t):
        def run():
            base = FAKE + t * 0x100_0000
            codes = [api.track(5, base + 16 * i, 10 + t) for i in range(per_thread)]
            codes += [api.untrack(5, base + 16 * i) for i in range(0, per_thread, 2)]
            results.append(codes)

        return run

    run_threads([worker(t) for t in range(nthreads)])
    assert all(code == 0 for codes in results for code in codes)
    traces = domain_traces(pyleakhunt.take_snapshot(), 5)
    assert len(traces) == nthreads * per_thread // 2
    assert sum(t.size for t in traces) == sum(
        (10 + t) * per_thread // 2 for t in range(nthreads)
    )
    assert pyleakhunt.get_stats()["lost_blocks"] == 0


def test_capi_python_domain_blocks_and_stop_forgets_foreign_blocks():
    api = capi(ctypes.PYFUNCTYPE)
    pyleakhunt.start(1)
    # Domain 0 is the Python heap: the block joins the ordinary table.
    result, line = api.track(0, FAKE, 999_983), lineno()
    assert result == 0
    found = traces_of_size(pyleakhunt.take_snapshot(), 999_983)
    assert [frames_of(t) for t in found] == [((__file__, line),)]
    assert api.untrack(0, FAKE) == 0
    assert not traces_of_size(pyleakhunt.take_snapshot(), 999_983)
    assert api.track(5, FAKE, 100) == 0
    pyleakhunt.stop()
    pyleakhunt.start(1)
    assert not domain_traces(pyleakhunt.take_snapshot(), 5)


def test_capi_header_works_from_a_c_extension(capi_probe_dir):
    proc = run_python(
        child(
            """
            import lhcapi_probe                 # imports pyleakhunt._core itself
            assert lhcapi_probe.is_tracing() == 0
            assert lhcapi_probe.track(7, 0x1000, 64) == -2
            pyleakhunt.start(1)
            assert lhcapi_probe.is_tracing() == 1
            r = lhcapi_probe.track(7, 0x1000, 4096); line = sys._getframe().f_lineno
            assert r == 0
            found = [t for t in pyleakhunt.take_snapshot().traces if t.domain == 7]
            assert [(t.size, frames(t)) for t in found] == [
                (4096, (("<string>", line),))], found
            assert lhcapi_probe.untrack(7, 0x1000) == 0
            found = [t for t in pyleakhunt.take_snapshot().traces if t.domain == 7]
            assert not found, ("untrack() left the block", found)
            pyleakhunt.stop()
            assert lhcapi_probe.untrack(7, 0x1000) == -2
            print("OK")
            """
        ),
        extra_path=(capi_probe_dir,),
    )
    assert_clean(proc)


def test_capi_block_identity_does_not_depend_on_the_callers_stack(capi_probe_dir):
    # A block is (domain, address): whatever bytes the caller's stack
    # holds, re-tracking replaces it and untracking removes it.
    proc = run_python(
        child(
            """
            import lhcapi_probe
            pyleakhunt.start(1)
            def domain(d):
                return sorted(t.size for t in pyleakhunt.take_snapshot().traces
                              if t.domain == d)
            before = pyleakhunt.get_traced_memory()[0]
            assert lhcapi_probe.track(7, 0x2000, 10**9, 0x11) == 0
            assert lhcapi_probe.track(7, 0x2000, 2 * 10**9, 0x22) == 0
            assert domain(7) == [2 * 10**9], ("re-track did not replace", domain(7))
            assert lhcapi_probe.untrack(7, 0x2000, 0x33) == 0
            assert domain(7) == [], ("untrack did not remove", domain(7))
            after = pyleakhunt.get_traced_memory()[0]
            assert abs(after - before) < 64 * 1024, (before, after)
            print("OK")
            """
        ),
        extra_path=(capi_probe_dir,),
    )
    assert_clean(proc)
