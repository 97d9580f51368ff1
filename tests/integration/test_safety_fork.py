"""The tracer never hurts the program it watches.

fork: the child keeps tracing with consistent tables and never deadlocks.

Where a crash, a deadlock or the end of the interpreter is what is being
tested, the scenario runs in a child interpreter with a timeout, and the test
asserts on its exit code and its output (helpers.run_python, assert_clean).
"""

from __future__ import annotations

import pytest
from helpers import (
    FORK_WITH_THREADS_PROBLEM,
    HAS_FORK,
    assert_clean,
    child,
    run_python,
)

# --------------------------------------------------------------------------
# 3. fork
# --------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_FORK, reason="needs os.fork")
def test_forked_child_keeps_tracing_with_consistent_tables():
    proc = run_python(
        child(
            """
            import traceback
            pyleakhunt.start(5)

            class Marker:
                pass

            def parent_allocates():
                return [Marker() for _ in range(200)]

            parent_objs = parent_allocates()
            parent_tb = pyleakhunt.get_object_traceback(parent_objs[7])
            assert parent_tb is not None
            parent_line = parent_tb[-1].lineno
            big_parent = bytes(300_000)
            sys.stdout.flush()

            pid = os.fork()
            if pid == 0:
                try:
                    assert pyleakhunt.is_tracing()
                    # Objects of the parent are still known, with their site.
                    tb = pyleakhunt.get_object_traceback(parent_objs[7])
                    assert tb is not None and tb[-1].lineno == parent_line, tb
                    assert pyleakhunt.get_object_traceback(big_parent) is not None
                    snap = check_snapshot_consistent()
                    sizes = [t.size for t in snap.traces]
                    assert any(s >= 300_000 for s in sizes)
                    # New allocations in the child are traced correctly.
                    def child_allocates():
                        return bytearray(424_242)
                    obj = child_allocates(); line = sys._getframe().f_lineno
                    tb = pyleakhunt.get_object_traceback(obj)
                    assert tb[-1].lineno == child_allocates.__code__.co_firstlineno + 1
                    assert tb[-2].lineno == line
                    p = raw_malloc_gil(515_151); line = sys._getframe().f_lineno
                    found = [t for t in pyleakhunt.take_snapshot().traces
                             if t.size == 515_151]
                    assert [frames(t)[-1] for t in found] == [("<string>", line)]
                    raw_free_nogil(p)
                    check_snapshot_consistent()
                    # Stop and start again in the child.
                    pyleakhunt.stop()
                    pyleakhunt.start(1)
                    x = bytes(5000); line = sys._getframe().f_lineno
                    assert pyleakhunt.get_object_traceback(x)[-1].lineno == line
                    check_snapshot_consistent()
                    print("CHILD OK", flush=True)
                    os._exit(0)
                except BaseException:
                    traceback.print_exc()
                    sys.stderr.flush()
                    os._exit(1)
            code = wait_child(pid, 30)
            assert code == 0, code
            # The parent is unaffected.
            tb = pyleakhunt.get_object_traceback(parent_objs[7])
            assert tb[-1].lineno == parent_line
            check_snapshot_consistent()
            print("OK")
            """
        )
    )
    assert_clean(proc, stdout_has=("CHILD OK", "OK"))


@pytest.mark.skipif(not HAS_FORK, reason="needs os.fork")
@pytest.mark.skipif(
    FORK_WITH_THREADS_PROBLEM is not None, reason=str(FORK_WITH_THREADS_PROBLEM)
)
def test_fork_while_other_threads_allocate_does_not_deadlock_the_child():
    proc = run_python(
        child(
            """
            import traceback
            stop_workers = threading.Event()

            laps = {"raw": 0, "python": 0}

            def raw_allocs():
                # Each ctypes call releases the GIL; the C loop of the next
                # test keeps the lock far busier.
                while not stop_workers.is_set():
                    for p in [raw_malloc_nogil(64 + i) for i in range(64)]:
                        raw_free_nogil(p)
                    laps["raw"] += 1

            def python_allocs():
                keep = []
                while not stop_workers.is_set():
                    keep.append({i: bytes(i) for i in range(40)})
                    if len(keep) > 100:
                        del keep[:50]
                    laps["python"] += 1

            pyleakhunt.start(3)
            workers = [threading.Thread(target=f, daemon=True)
                       for f in (raw_allocs, raw_allocs, raw_allocs, python_allocs)]
            for w in workers:
                w.start()
            wait_until(lambda: min(laps.values()) >= 3, "the workers to run")
            results = []
            for i in range(40):
                pid = os.fork()
                if pid == 0:
                    try:
                        x = [bytes(100) for _ in range(200)]
                        line = sys._getframe().f_lineno - 1
                        assert pyleakhunt.get_object_traceback(x[0])[-1].lineno == line
                        p = raw_malloc_nogil(100_001)
                        raw_free_nogil(p)
                        check_snapshot_consistent()
                        pyleakhunt.take_snapshot(traces=False)
                        os._exit(0)
                    except BaseException:
                        traceback.print_exc()
                        sys.stderr.flush()
                        os._exit(1)
                results.append(wait_child(pid, 15))
                if results[-1] != 0:
                    break
            stop_workers.set()
            for w in workers:
                w.join(30)
            assert results == [0] * 40, results
            check_snapshot_consistent()
            print("OK")
            """
        ),
        args=("-W", "ignore::DeprecationWarning"),
        timeout=120,
    )
    assert_clean(proc)


@pytest.mark.skipif(not HAS_FORK, reason="needs os.fork")
@pytest.mark.skipif(
    FORK_WITH_THREADS_PROBLEM is not None, reason=str(FORK_WITH_THREADS_PROBLEM)
)
def test_fork_while_c_code_allocates_without_the_gil_does_not_deadlock_the_child(
    capi_probe_dir,
):
    # Threads that allocate in a C loop with the GIL released hold the
    # tracer's lock a good part of the time, including when the main thread
    # forks; the lock must be free in the child all the same.
    proc = run_python(
        child(
            """
            import traceback
            import lhcapi_probe
            stop_workers = threading.Event()
            failures = []

            def c_churn():
                while not stop_workers.is_set():
                    failures.append(lhcapi_probe.churn(20000))

            pyleakhunt.start(3)
            workers = [threading.Thread(target=c_churn) for _ in range(3)]
            for w in workers:
                w.start()
            wait_until(lambda: len(failures) >= 6, "the C threads to run")
            results = []
            for i in range(30):
                pid = os.fork()
                if pid == 0:
                    try:
                        x = [bytes(100) for _ in range(200)]
                        line = sys._getframe().f_lineno - 1
                        assert pyleakhunt.get_object_traceback(x[0])[-1].lineno == line
                        assert lhcapi_probe.churn(1000) == 0
                        check_snapshot_consistent()
                        os._exit(0)
                    except BaseException:
                        traceback.print_exc()
                        sys.stderr.flush()
                        os._exit(1)
                results.append(wait_child(pid, 10))
                if results[-1] != 0:
                    break
            stop_workers.set()
            for w in workers:
                w.join(30)
                assert not w.is_alive()
            assert results == [0] * 30, results
            assert not any(failures), failures
            snap = check_snapshot_consistent()
            assert not [t for t in snap.traces if t.domain == 9]
            print("OK")
            """
        ),
        args=("-W", "ignore::DeprecationWarning"),
        extra_path=(capi_probe_dir,),
        timeout=120,
    )
    assert_clean(proc)


@pytest.mark.skipif(not HAS_FORK, reason="needs os.fork")
@pytest.mark.skipif(
    FORK_WITH_THREADS_PROBLEM is not None, reason=str(FORK_WITH_THREADS_PROBLEM)
)
def test_the_sampling_thread_restarts_in_a_forked_child_for_who_asks():
    # The watcher and the attribution share one sampling thread.  A child
    # gets no thread and no registrations: the attribution registers again
    # on its first request, a parent's watcher stays quiet (as its own
    # thread did), and a registration caught mid-call by the fork can still
    # be cancelled there, without waiting for a thread that is gone.
    proc = run_python(
        child(
            """
            from pyleakhunt import sampler
            from pyleakhunt.watcher import LeakWatcher
            from pyleakhunt.web import attribution

            def sampler_threads():
                return [t.name for t in threading.enumerate()
                        if t.name.startswith("pyleakhunt-")]

            watcher = LeakWatcher(interval=0.02).start()
            hunt = attribution.shared(interval=0.02)
            wait_until(lambda: hunt.report(refresh=None).samples >= 2
                       and len(watcher.samples) >= 2, "both clients to sample")
            assert sampler_threads() == ["pyleakhunt-watcher+attribution"], (
                sampler_threads())

            entered, release = threading.Event(), threading.Event()
            def busy():
                entered.set()
                release.wait(30)
            caught = sampler.register("test-busy", busy, 3600, delay=0)
            assert entered.wait(30)

            def in_child():
                assert sampler_threads() == [], sampler_threads()
                assert sampler.registrations() == []
                caught.cancel()  # its call ran on the parent's thread
                quiet = len(watcher.samples)
                before = hunt.report(refresh=None).samples
                hunt.enter("GET /child")  # the first request restarts it
                assert sampler_threads() == ["pyleakhunt-attribution"], (
                    sampler_threads())
                wait_until(lambda: hunt.report(refresh=None).samples
                           >= before + 2, "the child's attribution samples")
                assert len(watcher.samples) == quiet
                try:
                    watcher.start()
                except RuntimeError:
                    pass  # still "running": stop() is the way out
                else:
                    raise AssertionError("the watcher started again")
                watcher.stop()  # one last sample, no thread to wait for
                assert len(watcher.samples) == quiet + 1
                attribution.reset()
                assert sampler_threads() == [], sampler_threads()
                print("CHILD OK")

            assert exit_code_of_forked(in_child) == 0
            # The parent's thread goes on serving everyone.
            release.set()
            caught.cancel()
            count = len(watcher.samples)
            wait_until(lambda: len(watcher.samples) >= count + 2, "the parent")
            watcher.stop()
            assert sampler_threads() == ["pyleakhunt-attribution"]
            attribution.reset()
            assert sampler_threads() == [], sampler_threads()
            print("OK")
            """
        ),
        args=("-W", "ignore::DeprecationWarning"),
    )
    assert_clean(proc, stdout_has=("CHILD OK", "OK"))
