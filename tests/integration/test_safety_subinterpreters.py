"""Subinterpreters running while the tracer traces never hurt the program.

From 3.12 an isolated subinterpreter has a GIL and an object allocator of
its own (3.14 makes them public: ``concurrent.interpreters``,
``InterpreterPoolExecutor``).  Before the fix, the tracer kept such an
interpreter's code objects in its sites and freed them from the main
interpreter, into the wrong allocator: the program aborted in ``free()``
at the next snapshot.  Legacy subinterpreters (every version; mod_wsgi's
kind) share the main interpreter's GIL and allocator, but their objects
cannot outlive them either (3.12 crashed too).  So the tracer records
frames only in the main interpreter and in the one that started tracing.
"""

from __future__ import annotations

import sys
from textwrap import dedent

import pytest
from helpers import SUBINTERPRETERS, assert_clean, child, run_python


@pytest.mark.parametrize("tracer", ["start", "watcher"])
def test_subinterpreters_run_and_end_while_the_tracer_traces(tracer):
    # The watcher also keeps the free lists empty (3.10 to 3.12), whose
    # wrapped deallocators then run in the subinterpreters' threads too.
    proc = run_python(
        child(
            SUBINTERPRETERS
            + dedent(
                """
            import threading
            from pyleakhunt.watcher import LeakWatcher

            if %r == "start":
                pyleakhunt.start(5)
            else:
                watcher = LeakWatcher(interval=0.05, nframe=5).start()
            for kind in KINDS:
                for _ in range(2):
                    interp = make(kind)
                    run(interp, CODE)
                    pyleakhunt.take_snapshot().statistics("traceback")
                    _I.destroy(interp)
                    pyleakhunt.take_snapshot().statistics("traceback")

                # Two at once, beside the main thread's own churn.
                def work():
                    interp = make(kind)
                    for _ in range(3):
                        run(interp, CODE)
                    _I.destroy(interp)
                threads = [threading.Thread(target=work) for _ in range(2)]
                for t in threads:
                    t.start()
                junk = []
                for i in range(100000):
                    junk.append((i, str(i)))
                    if len(junk) > 1000:
                        junk.clear()
                        pyleakhunt.take_snapshot()
                for t in threads:
                    t.join()
                gc.collect()
                pyleakhunt.take_snapshot().statistics("lineno")
            if %r == "start":
                pyleakhunt.stop()
            else:
                watcher.stop()
            print("OK")
            """
                % (tracer, tracer)
            )
        ),
        timeout=180,
    )
    assert_clean(proc)


@pytest.mark.parametrize("allocator", ["default", "debug"])
def test_start_and_stop_while_isolated_subinterpreters_allocate(allocator):
    if sys.version_info < (3, 12):
        pytest.skip("isolated subinterpreters (a GIL of their own) exist from 3.12")
    if allocator == "debug" and sys.version_info < (3, 13):
        pytest.skip(
            "3.12's isolated subinterpreters corrupt the debug hooks' blocks "
            "under any allocator hook: the stdlib tracemalloc, started once, "
            "crashed 15 runs in 15 (docs/design.md)"
        )
    # Their threads call PyObject_Malloc and PyObject_Free under their own
    # GIL, so while start() and stop() swap the MEM and OBJ allocators: a
    # thread that read our hook with the old ctx freed a pymalloc block
    # with libc's free() ("double free or corruption", 3.14).  CPython's
    # debug hooks (PYTHONMALLOC=debug, and every debug build) read their
    # ctx: given ours they crashed, and a block that our hook given theirs
    # sent to the other domain's hook was a "bad ID" at its free.
    proc = run_python(
        child(
            SUBINTERPRETERS
            + dedent(
                """
            import threading
            CHURN = (
                "import time\\n"
                "deadline = time.monotonic() + 2\\n"
                "while time.monotonic() < deadline:\\n"
                "    x = [{'a': i, 'b': str(i)} for i in range(100)]\\n"
            )

            def work():
                interp = make("isolated")
                run(interp, CHURN)
                _I.destroy(interp)

            threads = [threading.Thread(target=work) for _ in range(2)]
            for t in threads:
                t.start()
            swaps = 0
            while any(t.is_alive() for t in threads):
                pyleakhunt.start(1, sample_bytes=4096 if swaps % 3 == 0 else None)
                pyleakhunt.stop()
                swaps += 1
            assert swaps > 100, swaps
            print("OK")
            """
            )
        ),
        timeout=120,
        env_extra={"PYTHONMALLOC": None if allocator == "default" else "debug"},
    )
    assert_clean(proc)


def test_start_snapshot_and_stop_while_isolated_subinterpreters_are_made():
    if sys.version_info < (3, 12):
        pytest.skip("isolated subinterpreters (a GIL of their own) exist from 3.12")
    # 3.12 puts its default RAW allocator in for a moment in every new
    # interpreter (init_sys_streams), then back what it found: in the
    # threads of isolated ones, while ours run.  stop() refused ("another
    # tracer ... still wraps"), snapshots said our hooks were removed, and
    # a restart took our own RAW hook, put back, for the allocator beneath:
    # the child hung (1 run in 4 of 3 s).  test_safety_start_stop.py plays
    # each case alone.
    proc = run_python(
        child(
            SUBINTERPRETERS
            + dedent(
                """
            import threading
            deadline = time.monotonic() + 5

            def work():
                while time.monotonic() < deadline:
                    _I.destroy(make("isolated"))

            threads = [threading.Thread(target=work) for _ in range(2)]
            for t in threads:
                t.start()
            cycles = 0
            while any(t.is_alive() for t in threads):
                pyleakhunt.start(1, sample_bytes=4096 if cycles % 3 == 0 else None)
                pyleakhunt.take_snapshot()
                pyleakhunt.stop()
                cycles += 1
            assert cycles > 100, cycles
            print("OK")
            """
            )
        ),
        timeout=60,
    )
    assert_clean(proc)


@pytest.mark.parametrize("kind", ["legacy", "isolated"])
def test_memory_a_subinterpreter_keeps_is_counted_without_frames(kind):
    if kind == "isolated" and sys.version_info < (3, 12):
        pytest.skip("isolated subinterpreters exist from CPython 3.12")
    # Its code objects could not be kept past its end: "<unknown>".
    proc = run_python(
        child(
            SUBINTERPRETERS
            + dedent(
                """
            pyleakhunt.start(1)
            interp = make(%r)
            before = pyleakhunt.get_traced_memory()[0]
            run(interp, CODE)
            grew = pyleakhunt.get_traced_memory()[0] - before
            assert grew > 5_000_000, grew
            where = {}
            for stat in pyleakhunt.take_snapshot().statistics("lineno"):
                frame = stat.traceback[0]
                where[frame.filename] = where.get(frame.filename, 0) + stat.size
            assert where.get("<unknown>", 0) > 5_000_000, where
            _I.destroy(interp)
            gc.collect()
            pyleakhunt.take_snapshot().statistics("lineno")
            pyleakhunt.stop()
            print("OK")
            """
                % kind
            )
        ),
        timeout=120,
    )
    assert_clean(proc)


#: Run in a legacy subinterpreter: traces itself, and checks the line.
TRACED_IN_SUBINTERPRETER = """
import pyleakhunt
pyleakhunt.start(1)
kept = ["x" * 10 + str(i) for i in range(100000)]; line = 4
here = __import__("sys")._getframe().f_code.co_filename  # <string>, <script>
where = {}
for stat in pyleakhunt.take_snapshot().statistics("lineno"):
    frame = stat.traceback[0]
    key = (frame.filename, frame.lineno)
    where[key] = where.get(key, 0) + stat.size
top = max(where, key=where.get)
assert top == (here, line) and where[top] > 5_000_000, where
"""


def test_a_legacy_subinterpreter_traces_itself_at_its_lines():
    # mod_wsgi runs each application in a legacy subinterpreter: tracing
    # started there records that interpreter's frames, and its end stops it.
    proc = run_python(
        child(
            SUBINTERPRETERS
            + "TRACED = %r\n" % TRACED_IN_SUBINTERPRETER
            + dedent(
                """
            interp = make("legacy")
            run(interp, TRACED)
            _I.destroy(interp)
            assert not pyleakhunt.is_tracing()
            gc.collect()
            pyleakhunt.start(1)
            pyleakhunt.take_snapshot().statistics("lineno")
            pyleakhunt.stop()
            print("OK")
            """
            )
        ),
        timeout=120,
    )
    assert_clean(proc)


@pytest.mark.skipif(
    sys.version_info < (3, 14), reason="InterpreterPoolExecutor is new in 3.14"
)
def test_an_interpreter_pool_runs_under_the_watcher():
    proc = run_python(
        child(
            """
            import json
            from concurrent.futures import InterpreterPoolExecutor
            from pyleakhunt.watcher import LeakWatcher

            watcher = LeakWatcher(interval=0.05)
            watcher.start()
            with InterpreterPoolExecutor(2) as pool:
                texts = list(pool.map(json.dumps, [{"i": i} for i in range(2000)]))
            assert len(texts) == 2000
            watcher.stop()
            print("OK")
            """
        ),
        timeout=120,
    )
    assert_clean(proc)


def test_a_subinterpreter_that_imports_pyleakhunt_leaves_the_tracing_on():
    # Its exit ran the package's atexit stop(), which stopped the main
    # interpreter's tracing for the rest of the process; and the autostart
    # hook, which runs in every interpreter, started a second production
    # session there.
    proc = run_python(
        child(
            SUBINTERPRETERS
            + dedent(
                """
            pyleakhunt.start(1)
            interp = make("legacy")
            run(interp, '''if 1:
                from pyleakhunt import production
                started = production.start_from_environment(
                    {"PYLEAKHUNT": "interval=1,signal=none"})
                assert started is False, started
            ''')
            _I.destroy(interp)
            assert pyleakhunt.is_tracing()
            pyleakhunt.take_snapshot()
            pyleakhunt.stop()
            print("OK")
            """
            )
        ),
        timeout=120,
    )
    assert_clean(proc)
