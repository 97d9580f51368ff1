"""The tracer never hurts the program it watches.

stop() while other threads allocate, and start/stop storms.

Where a crash, a deadlock or the end of the interpreter is what is being
tested, the scenario runs in a child interpreter with a timeout, and the test
asserts on its exit code and its output (helpers.run_python, assert_clean).
"""

from __future__ import annotations

from helpers import (
    assert_clean,
    child,
    lineno,
    run_python,
)

import pyleakhunt
from pyleakhunt import _core

# --------------------------------------------------------------------------
# 2. stop() while others allocate; start/stop storms
# --------------------------------------------------------------------------


def test_stop_is_safe_while_other_threads_allocate():
    proc = run_python(
        child(
            """
            stop_workers = threading.Event()
            errors = []

            def python_allocs():
                try:
                    keep = []
                    while not stop_workers.is_set():
                        keep.append([str(i) for i in range(30)])
                        keep.append(bytes(4000))
                        if len(keep) > 300:
                            del keep[:150]
                except BaseException as exc:
                    errors.append(repr(exc))

            def raw_allocs():
                try:
                    while not stop_workers.is_set():
                        for p in [raw_malloc_nogil(700) for _ in range(50)]:
                            raw_free_nogil(p)
                except BaseException as exc:
                    errors.append(repr(exc))

            workers = [threading.Thread(target=f) for f in
                       (python_allocs, python_allocs, raw_allocs, raw_allocs)]
            for w in workers:
                w.start()
            for i in range(200):
                pyleakhunt.start(5)
                time.sleep(0.0005)   # let the others run with tracing on
                pyleakhunt.stop()
                assert not pyleakhunt.is_tracing()
                assert pyleakhunt.get_traced_memory() == (0, 0)
            stop_workers.set()
            for w in workers:
                w.join(60)
                assert not w.is_alive(), "worker stuck"
            assert not errors, errors
            pyleakhunt.start(1)
            x = bytes(12345); line = sys._getframe().f_lineno
            assert pyleakhunt.get_object_traceback(x)[-1].lineno == line
            check_snapshot_consistent()
            pyleakhunt.stop()
            print("OK")
            """
        )
    )
    assert_clean(proc)


def test_start_and_stop_while_c_code_allocates_without_the_gil(capi_probe_dir):
    proc = run_python(
        child(
            """
            import lhcapi_probe
            stop_workers = threading.Event()
            failures = []

            def c_churn():
                while not stop_workers.is_set():
                    failures.append(lhcapi_probe.churn(5000))

            workers = [threading.Thread(target=c_churn) for _ in range(3)]
            for w in workers:
                w.start()
            for i in range(300):
                pyleakhunt.start(1 + i % 4)
                if i % 10 == 0:
                    check_snapshot_consistent(slack=10**6)
                pyleakhunt.stop()
            # A last stretch of tracing with the C threads running: every
            # block they tracked, they untracked; every one they allocated,
            # they freed.
            pyleakhunt.start(1)
            laps = len(failures)
            wait_until(lambda: len(failures) >= laps + 6, "the C threads to run")
            stop_workers.set()
            for w in workers:
                w.join(60)
                assert not w.is_alive(), "worker stuck"
            assert not any(failures), failures
            snap = check_snapshot_consistent()
            assert not [t for t in snap.traces if t.domain == 9]
            assert not [t for t in snap.traces if frames(t) == UNKNOWN
                        and 64 <= t.size < 64 + 1024]
            assert pyleakhunt.get_stats()["lost_blocks"] == 0
            x, line = bytes(12345), sys._getframe().f_lineno
            assert pyleakhunt.get_object_traceback(x)[-1].lineno == line
            pyleakhunt.stop()
            print("OK")
            """
        ),
        extra_path=(capi_probe_dir,),
    )
    assert_clean(proc)


def test_threads_calling_the_raw_allocator_never_see_a_hook_half_installed(
    capi_probe_dir,
):
    # start() and stop() swap the RAW domain's allocator while C threads
    # call it without the GIL.  PyMem_SetAllocator copies the struct four
    # bytes at a time in PGO builds (Debian's 3.11, 3.14, 3.15): a thread
    # that read a function pointer half old, half new jumped to nowhere.
    proc = run_python(
        child(
            """
            import lhcapi_probe
            stop_workers = threading.Event()

            def spin():
                while not stop_workers.is_set():
                    lhcapi_probe.raw_free_spin(10**6)

            workers = [threading.Thread(target=spin) for _ in range(2)]
            for w in workers:
                w.start()
            for i in range(20000):
                pyleakhunt.start(1, sample_bytes=4096 if i % 3 == 0 else None)
                pyleakhunt.stop()
            stop_workers.set()
            for w in workers:
                w.join(60)
                assert not w.is_alive(), "worker stuck"
            print("OK")
            """
        ),
        extra_path=(capi_probe_dir,),
    )
    assert_clean(proc)


def test_start_stop_1000_times_in_a_row_then_tracing_still_works():
    pyleakhunt.start(1)
    pyleakhunt.take_snapshot()
    pyleakhunt.stop()
    memory_after_one = _core.get_tracemalloc_memory()
    for i in range(1000):
        pyleakhunt.start(1 + i % 5)
        assert pyleakhunt.is_tracing()
        pyleakhunt.stop()
        assert not pyleakhunt.is_tracing()
    # The tracer's own memory does not grow with the cycles.
    assert _core.get_tracemalloc_memory() == memory_after_one
    pyleakhunt.start(1)
    data, line = [bytes(200) for _ in range(500)], lineno()
    assert pyleakhunt.get_object_traceback(data[0])[-1].lineno == line
    stats = pyleakhunt.take_snapshot().statistics("lineno")
    mine = [s for s in stats if s.traceback[-1].lineno == line]
    assert mine and mine[0].count >= 500


def test_tracer_memory_does_not_drift_over_snapshot_cycles():
    for _ in range(200):
        pyleakhunt.start(1)
        pyleakhunt.take_snapshot(traces=True)
        pyleakhunt.take_snapshot(traces=False)
        pyleakhunt.stop()
    assert _core.get_tracemalloc_memory() == 0
