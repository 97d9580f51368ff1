"""The tracer never hurts the program it watches.

Interpreter shutdown with tracing on is clean.

Where a crash, a deadlock or the end of the interpreter is what is being
tested, the scenario runs in a child interpreter with a timeout, and the test
asserts on its exit code and its output (helpers.run_python, assert_clean).
"""

from __future__ import annotations

import signal
import sys

import pytest
from helpers import (
    assert_clean,
    child,
    run_python,
)

# --------------------------------------------------------------------------
# 5. Interpreter shutdown with tracing on
# --------------------------------------------------------------------------


SHUTDOWN_SCRIPTS = {
    "normal_exit": (
        """
        pyleakhunt.start(25)
        class C:
            pass
        data = [bytes(100) for _ in range(1000)]
        objs = [C() for _ in range(1000)]
        p = raw_malloc_nogil(5000)   # never freed
        print("OK")
        """,
        0,
    ),
    "daemon_threads_still_allocating": (
        """
        import zlib
        pyleakhunt.start(10)
        laps = {"python": 0, "raw": 0, "zlib": 0}
        def python_allocs():
            keep = []
            while True:
                keep.append({i: str(i) * 20 for i in range(30)})
                keep.append(bytes(2000))
                if len(keep) > 200:
                    del keep[:100]
                laps["python"] += 1
        def raw_allocs():
            while True:
                for p in [raw_malloc_nogil(4096) for _ in range(32)]:
                    raw_free_nogil(p)
                laps["raw"] += 1
        def zlib_work():
            data = zlib.compress(os.urandom(10000) * 30)
            while True:
                zlib.decompress(data)
                laps["zlib"] += 1
        for f in (python_allocs, python_allocs, raw_allocs, raw_allocs, zlib_work):
            threading.Thread(target=f, daemon=True).start()
        wait_until(lambda: min(laps.values()) >= 3, "the threads to run")
        print("OK")
        """,
        0,
    ),
    "daemon_thread_starting_and_stopping_tracing": (
        """
        laps = {"toggler": 0, "raw": 0}
        def toggler():
            while True:
                pyleakhunt.start(3)
                x = [bytes(50) for _ in range(100)]
                pyleakhunt.stop()
                laps["toggler"] += 1
        def raw_allocs():
            while True:
                raw_free_nogil(raw_malloc_nogil(3000))
                laps["raw"] += 1
        threading.Thread(target=toggler, daemon=True).start()
        threading.Thread(target=raw_allocs, daemon=True).start()
        wait_until(lambda: min(laps.values()) >= 3, "the threads to run")
        print("OK")
        """,
        0,
    ),
    "sys_exit_inside_tracing": (
        """
        pyleakhunt.start(5)
        def deep(n):
            if n == 0:
                keep = [bytes(1000) for _ in range(100)]
                print("OK", flush=True)
                sys.exit(3)
            return deep(n - 1)
        deep(20)
        """,
        3,
    ),
    "os_exit_while_tracing": (
        """
        pyleakhunt.start(5)
        def raw_allocs():
            while True:
                raw_free_nogil(raw_malloc_nogil(100))
        threading.Thread(target=raw_allocs, daemon=True).start()
        data = [bytes(1000) for _ in range(100)]
        print("OK", flush=True)
        os._exit(7)
        """,
        7,
    ),
    "raise_system_exit_after_a_thread_allocated": (
        """
        pyleakhunt.start(2)
        def work():
            global data
            data = [str(i) for i in range(10000)]
        t = threading.Thread(target=work)
        t.start()
        t.join()
        print("OK", flush=True)
        raise SystemExit(0)
        """,
        0,
    ),
}


def died_in_cpython_finalization(proc):
    """Whether *proc* may have met CPython's gh-87135: before 3.14 a
    daemon thread that wakes up to take the GIL once the interpreter is
    freed crashes the process at exit (3.14 makes such threads hang
    instead).  The program has ended ("OK") and left nothing on stderr.
    A core of such a crash on 3.10 shows the thread in take_gil(), reading
    the freed interpreter, and the main thread in exit()."""
    return (
        sys.version_info < (3, 14)
        and proc.returncode == -signal.SIGSEGV
        and "OK" in proc.stdout
        and not proc.stderr.strip()
    )


@pytest.mark.parametrize("name", sorted(SHUTDOWN_SCRIPTS))
def test_interpreter_shutdown_with_tracing_on_is_clean(name):
    body, returncode = SHUTDOWN_SCRIPTS[name]
    # A crash of CPython's own at exit (3 runs in some 200 of the daemon
    # threads' scenario on 3.10, under load) is run again, twice at most:
    # a crash of the tracer's at exit would come back.
    for _ in range(3):
        proc = run_python(child(body), timeout=60)
        if not died_in_cpython_finalization(proc):
            break
    assert_clean(proc, returncode=returncode)


@pytest.mark.parametrize("tracemalloc_too", [False, True])
def test_interpreter_shutdown_while_c_code_allocates_without_the_gil(
    capi_probe_dir, tracemalloc_too
):
    # The C threads never take the GIL back while the interpreter finalizes:
    # they keep calling the allocator (and the C API) through all of it.
    proc = run_python(
        child(
            f"""
            import lhcapi_probe, tracemalloc
            pyleakhunt.start(5)
            if {tracemalloc_too}:
                tracemalloc.start(5)   # above pyleakhunt: it stays installed
            entered = []
            def c_churn():
                while True:
                    entered.append(1)   # then into C, never to come back
                    lhcapi_probe.churn(10**9)
            for _ in range(3):
                threading.Thread(target=c_churn, daemon=True).start()
            data = [bytes(100) for _ in range(1000)]
            wait_until(lambda: len(entered) == 3, "the C threads to run")
            print("OK")
            """
        ),
        extra_path=(capi_probe_dir,),
    )
    assert_clean(proc)
