"""The tracer never hurts the program it watches.

Living next to the stdlib tracemalloc.

Where a crash, a deadlock or the end of the interpreter is what is being
tested, the scenario runs in a child interpreter with a timeout, and the test
asserts on its exit code and its output (helpers.run_python, assert_clean).
"""

from __future__ import annotations

import textwrap

import pytest
from helpers import (
    assert_clean,
    child,
    run_python,
)

# --------------------------------------------------------------------------
# 6. Coexistence with the stdlib tracemalloc
# --------------------------------------------------------------------------


COEXIST_PRELUDE = """
import tracemalloc

def alloc():
    return [bytearray(1000) for _ in range(200)]
ALLOC_LINE = alloc.__code__.co_firstlineno + 1

def both_see(obj):
    lh = pyleakhunt.get_object_traceback(obj)
    tm = tracemalloc.get_object_traceback(obj)
    assert lh is not None and lh[-1].lineno == ALLOC_LINE, lh
    assert tm is not None and tm[-1].lineno == ALLOC_LINE, tm

import gc, warnings
HAS_REF_TRACER = sys.version_info >= (3, 13)
# Scripts that start tracemalloc after pyleakhunt get this warning (3.13+);
# e and f check it where it is due.
warnings.filterwarnings("ignore", message="another tracer .* reference tracer")

def reuse_from_free_list():
    # As CPython's test_new_reference: the second list is the first one's
    # memory, taken back from the free list without an allocation; the
    # reference tracer (3.13+) tells a tracer where it was made, and before
    # 3.13 pyleakhunt's start() keeps the free lists empty.
    gc.collect()
    obj = []
    obj = None
    obj = []
    return obj, sys._getframe().f_lineno - 1

def see_reuse(*tracers):
    obj, line = reuse_from_free_list()
    for tracer in tracers:
        tb = tracer.get_object_traceback(obj)
        assert tb is not None and tb[-1].lineno == line, (tracer, tb, line)

def ref_tracer_warnings(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [w for w in caught if "reference tracer" in str(w.message)]
"""

COEXIST_SCRIPTS = {
    "a_lh_tm_tmstop_lhstop": """
        pyleakhunt.start(3)
        tracemalloc.start(3)
        x = alloc()
        both_see(x[0])
        assert pyleakhunt.get_traced_memory()[0] >= 200 * 1000
        assert tracemalloc.get_traced_memory()[0] >= 200 * 1000
        assert pyleakhunt.take_snapshot().statistics("lineno")
        tracemalloc.stop()
        y = alloc()
        assert pyleakhunt.get_object_traceback(y[0])[-1].lineno == ALLOC_LINE
        check_snapshot_consistent()
        pyleakhunt.stop()
        assert not pyleakhunt.is_tracing()
        z = alloc()
        assert pyleakhunt.get_object_traceback(z[0]) is None
        print("OK")
        """,
    "b_lh_tm_lhstop_refused": """
        pyleakhunt.start(3)
        tracemalloc.start(3)
        try:
            pyleakhunt.stop()
        except RuntimeError as exc:
            message = str(exc)
        else:
            raise AssertionError("stop() under tracemalloc was not refused")
        assert "tracemalloc" in message and "first" in message, message
        # Refused: both still trace.
        assert pyleakhunt.is_tracing() and tracemalloc.is_tracing()
        x = alloc()
        both_see(x[0])
        pyleakhunt.get_traced_memory()
        tracemalloc.stop()
        y = alloc()
        assert pyleakhunt.get_object_traceback(y[0])[-1].lineno == ALLOC_LINE
        pyleakhunt.stop()
        assert not pyleakhunt.is_tracing()
        print("OK")
        """,
    "c_tm_lh_lhstop_tmstop": """
        tracemalloc.start(3)
        pyleakhunt.start(3)
        x = alloc()
        both_see(x[0])
        check_snapshot_consistent()
        pyleakhunt.stop()
        assert not pyleakhunt.is_tracing() and tracemalloc.is_tracing()
        y = alloc()
        assert tracemalloc.get_object_traceback(y[0])[-1].lineno == ALLOC_LINE
        assert pyleakhunt.get_object_traceback(y[0]) is None
        tracemalloc.stop()
        print("OK")
        """,
    "d_tm_lh_tmstop_abandoned": """
        tracemalloc.start(3)
        pyleakhunt.start(3)
        x = alloc()
        tracemalloc.stop()
        # The program keeps running normally.
        y = alloc()
        assert len(y) == 200 and bytes(y[5]) == bytes(1000)
        try:
            pyleakhunt.get_traced_memory()
        except RuntimeError as exc:
            message = str(exc)
        else:
            raise AssertionError("stale pyleakhunt tables were used")
        assert "removed" in message and "hooks" in message, message
        assert not pyleakhunt.is_tracing()
        try:
            pyleakhunt.take_snapshot()
        except RuntimeError:
            pass
        else:
            raise AssertionError("take_snapshot() worked without tracing")
        pyleakhunt.stop()   # harmless
        z = [dict(a=i) for i in range(1000)]
        # Tracing can start again.
        pyleakhunt.start(1)
        w = alloc()
        assert pyleakhunt.get_object_traceback(w[0])[-1].lineno == ALLOC_LINE
        check_snapshot_consistent()
        pyleakhunt.stop()
        print("OK")
        """,
    "d_tm_lh_tmstop_snapshot_is_the_first_call": """
        tracemalloc.start(3)
        pyleakhunt.start(3)
        tracemalloc.stop()
        y = alloc()
        try:
            pyleakhunt.take_snapshot()
        except RuntimeError as exc:
            assert "removed" in str(exc), exc
        else:
            raise AssertionError("a snapshot of stale tables was taken")
        assert not pyleakhunt.is_tracing()
        print("OK")
        """,
    "e_tm_lh_both_follow_free_list_reuse": """
        tracemalloc.start(3)
        pyleakhunt.start(3)
        # 3.13+: pyleakhunt took the slot and forwards to tracemalloc's
        # tracer.  Before: pyleakhunt keeps the free lists empty, and
        # tracemalloc is told of reuse from inside the interpreter.
        assert not ref_tracer_warnings(lambda: see_reuse(pyleakhunt, tracemalloc))
        pyleakhunt.stop()
        see_reuse(tracemalloc)  # 3.13+: the slot went back to tracemalloc
        tracemalloc.stop()
        print("OK")
        """,
    "f_lh_tm_slot_taken_back_with_a_warning": """
        pyleakhunt.start(3)
        tracemalloc.start(3)  # takes the reference tracer slot from us
        if HAS_REF_TRACER:
            see_reuse(tracemalloc)
            found = ref_tracer_warnings(pyleakhunt.get_traced_memory)
            assert len(found) == 1, found
            assert "tracemalloc" in str(found[0].message)
            # Taken back, shared: both follow reuse, and no second warning.
            assert not ref_tracer_warnings(lambda: see_reuse(pyleakhunt, tracemalloc))
        else:
            assert not ref_tracer_warnings(pyleakhunt.get_traced_memory)
        tracemalloc.stop()  # empties the slot and gives our hooks back
        if HAS_REF_TRACER:
            ref_tracer_warnings(pyleakhunt.get_traced_memory)  # takes it again
            see_reuse(pyleakhunt)
        pyleakhunt.stop()
        print("OK")
        """,
    "exit_with_tracemalloc_above_pyleakhunt": """
        pyleakhunt.start(3)
        tracemalloc.start(3)
        x = alloc()
        both_see(x[0])
        print("OK")
        """,
    "exit_with_pyleakhunt_above_tracemalloc": """
        tracemalloc.start(3)
        pyleakhunt.start(3)
        x = alloc()
        both_see(x[0])
        print("OK")
        """,
}


@pytest.mark.parametrize("name", sorted(COEXIST_SCRIPTS))
def test_coexistence_with_stdlib_tracemalloc(name):
    proc = run_python(child(COEXIST_PRELUDE + textwrap.dedent(COEXIST_SCRIPTS[name])))
    assert_clean(proc)
