"""Keeping CPython's free lists empty never hurts the program.

`pyleakhunt.lease.acquire(fresh_objects=True)` (the watcher, ``run``, web
attribution's ``fresh_objects=True``) wraps the list and dict deallocators
and marks the tuple and float free lists full on 3.10 to 3.12; on 3.13+,
whose reference tracer sees objects reused, it turns off only the free
list of dicts' key tables (src/freelists.c).  Web attribution's
``collect=True``, which empties them with a full collection before each
sample, is checked here too.
"""

from __future__ import annotations

import ctypes
import importlib.util
import sys

import pytest
from helpers import assert_clean, child, run_python

import pyleakhunt
from pyleakhunt import _core, lease

#: Before 3.13 a reused object keeps its block's first line unless the
#: free lists are kept empty; from 3.13 the reference tracer moves it.
BEFORE_313 = sys.version_info < (3, 13)


def test_the_free_lists_are_kept_empty_while_a_lease_asks():
    held = lease.acquire(1, owner="test", fresh_objects=True)
    try:
        assert _core.free_lists_kept_empty()
        other = lease.acquire(1, owner="other")
        other.release()
        assert _core.free_lists_kept_empty()
    finally:
        held.release()
    assert not _core.free_lists_kept_empty()
    assert not pyleakhunt.is_tracing()


def test_start_keeps_objects_fresh_when_tracing_exactly():
    # The tracemalloc drop-in: a list reused from the free list must be
    # traced at its new line (CPython's test_new_reference).
    try:
        pyleakhunt.start(1)
        assert _core.free_lists_kept_empty()
        pyleakhunt.start(5)  # a new limit leaves the free lists as they are
        assert _core.free_lists_kept_empty()
        pyleakhunt.start(5, fresh_objects=False)
        assert not _core.free_lists_kept_empty()
        pyleakhunt.start(3)
        assert not _core.free_lists_kept_empty()
    finally:
        pyleakhunt.stop()
    assert not _core.free_lists_kept_empty()


def test_start_leaves_the_free_lists_alone_when_sampling_unless_asked():
    try:
        pyleakhunt.start(1, sample_bytes=4096)
        assert not _core.free_lists_kept_empty()
        pyleakhunt.start(1, sample_bytes=4096, fresh_objects=True)
        assert _core.free_lists_kept_empty()
    finally:
        pyleakhunt.stop()


@pytest.mark.parametrize("bad", [1, "yes", 0.0])
def test_start_refuses_a_fresh_objects_that_is_no_bool(bad):
    with pytest.raises(TypeError, match="fresh_objects must be True, False or None"):
        pyleakhunt.start(1, fresh_objects=bad)
    assert not pyleakhunt.is_tracing()


@pytest.mark.parametrize("fresh", [True, False])
def test_a_list_reused_after_start_is_traced_at_the_line_that_made_it(fresh):
    # As test_new_reference, with the opposite case as the control: the
    # second list lies in the first one's memory.
    code = (
        """
import gc, pyleakhunt
pyleakhunt.start(1, fresh_objects=%s)
gc.collect()
obj = []  # line 5
obj = None
obj = []  # line 7
print(pyleakhunt.get_object_traceback(obj)[0].lineno)
"""
        % fresh
    )
    proc = run_python(code)
    assert_clean(proc, stdout_has=())
    stale = BEFORE_313 and not fresh
    assert proc.stdout.strip() == ("5" if stale else "7")


def test_a_lease_without_fresh_objects_keeps_a_hand_started_tracers_own():
    try:
        pyleakhunt.start(1)
        held = lease.acquire(1, owner="web")  # fresh_objects=False
        assert _core.free_lists_kept_empty()
        held.release()
        assert _core.free_lists_kept_empty()
        pyleakhunt.start(1, fresh_objects=False)
        held = lease.acquire(1, owner="watcher", fresh_objects=True)
        assert _core.free_lists_kept_empty()
        held.release()
        assert not _core.free_lists_kept_empty()
    finally:
        pyleakhunt.stop()


def test_a_lease_that_starts_the_tracer_keeps_objects_fresh_only_if_it_asks():
    held = lease.acquire(1, owner="web")
    try:
        assert pyleakhunt.is_tracing()
        assert not _core.free_lists_kept_empty()
        deeper = lease.acquire(4, owner="deeper")  # restarts with a new limit
        assert not _core.free_lists_kept_empty()
        deeper.release()
    finally:
        held.release()


def tp_dealloc(type_name):
    """The deallocator in a static type of the interpreter, as an address."""
    # PyTypeObject: refcount, type, size, tp_name, tp_basicsize,
    # tp_itemsize, then tp_dealloc.
    base = ctypes.addressof(ctypes.c_char.in_dll(ctypes.pythonapi, type_name))
    return ctypes.c_void_p.from_address(base + 6 * ctypes.sizeof(ctypes.c_void_p)).value


WRAPPED_TYPES = ["PyList_Type", "PyDict_Type", "PyTuple_Type", "PyFloat_Type"]
if sys.version_info < (3, 11):
    WRAPPED_TYPES.append("PyFrame_Type")  # its dead frames, kept in code objects


def test_cpython_deallocators_are_given_back_when_no_lease_asks():
    # An object freed after the lease pays nothing for it.
    before = [tp_dealloc(name) for name in WRAPPED_TYPES]
    held = lease.acquire(1, owner="test", fresh_objects=True)
    try:
        during = [tp_dealloc(name) for name in WRAPPED_TYPES]
        if sys.version_info < (3, 13):
            assert all(d != b for d, b in zip(during, before))
    finally:
        held.release()
    assert [tp_dealloc(name) for name in WRAPPED_TYPES] == before


def test_stop_lets_the_free_lists_fill_again():
    lease.acquire(1, owner="test", fresh_objects=True)
    pyleakhunt.stop()  # by hand, under the lease
    assert not _core.free_lists_kept_empty()
    for held in lease.held():
        held.release()


def test_deeply_nested_objects_are_freed_without_overflowing_the_stack():
    # The wrapped deallocators take CPython's trashcan, which the original
    # ones skip once they no longer find themselves in the type.
    proc = run_python(
        child(
            """
            from pyleakhunt import lease
            held = lease.acquire(1, owner="test", fresh_objects=True)
            for make in (lambda x: [x], lambda x: {"x": x}, lambda x: (x,)):
                nested = None
                for _ in range(1_000_000):
                    nested = make(nested)
                del nested
            class Sub(list):
                pass
            nested = Sub()
            for _ in range(200_000):
                nested = Sub([nested])
            del nested
            class SubTuple(tuple):
                pass
            nested = SubTuple()
            for _ in range(200_000):
                nested = SubTuple((nested,))
            del nested
            # A chain of dead frames, each dropping the one below (3.10's
            # frame_dealloc takes the trashcan itself; a deeper chain
            # would overflow the C stack while it is made).
            sys.setrecursionlimit(20_000)
            def down(n):
                return down(n - 1) if n else sys._getframe()
            frame = down(10_000)
            del frame
            held.release()
            print("OK")
            """
        ),
        timeout=120,
    )
    assert_clean(proc)


def test_a_tuple_made_after_a_full_collection_is_traced_at_its_line():
    # A full collection resets the tuple and float free lists' counters;
    # they are set again before the next tuple can be made from a dead one.
    proc = run_python(
        child(
            """
            import gc
            from pyleakhunt import lease
            held = lease.acquire(1, owner="test", fresh_objects=True)
            gc.collect()
            dead = [(i, -i) for i in range(50)]
            del dead
            kept = (len(sys.argv), -len(sys.argv)); here = sys._getframe().f_lineno
            line = pyleakhunt.get_object_traceback(kept)[0].lineno
            assert line == here, (line, here)
            held.release()
            print("OK")
            """
        ),
    )
    assert_clean(proc)


@pytest.mark.parametrize("how", ["lease", "start"])
def test_a_dict_kept_beside_dicts_freed_is_traced_with_its_key_table_at_its_line(
    how,
):
    # The commonest leak: one small dict with str keys kept per call, beside
    # code that throws such dicts away.  A dict's key table is no object:
    # CPython reuses dead ones from a free list of its own, and nothing
    # tells a tracer (3.13+'s reference tracer sees objects only), so the
    # kept dict's table kept the line that made the dead one: two thirds
    # of the leak were credited to the churn, on 3.13 to 3.15.
    proc = run_python(
        "HOW = %r\n" % how
        + child(
            """
            import gc
            from pyleakhunt import lease

            def churn(i):
                for j in range(5):
                    temp = {"a": i, "b": j}; churn_line = sys._getframe().f_lineno
                return churn_line

            if HOW == "lease":
                held = lease.acquire(1, owner="test", fresh_objects=True)
            else:
                pyleakhunt.start(1, fresh_objects=True)
            gc.collect()
            kept = []
            for i in range(300):
                churn_line = churn(i)
                kept.append({"id": i, "name": "x"}); here = sys._getframe().f_lineno
            stats = pyleakhunt.take_snapshot().statistics("lineno")
            count = {s.traceback[0].lineno: s.count for s in stats
                     if s.traceback[0].filename == "<string>"}
            # The 300 dicts and their 300 key tables (and the list's array).
            assert count.get(here, 0) >= 600, (count, here)
            assert count.get(churn_line, 0) <= 4, (count, churn_line)
            print("OK")
            """
        )
    )
    assert_clean(proc)


def test_a_dict_kept_beside_dicts_that_grow_is_traced_with_its_key_table_at_its_line():
    # A dict that keeps living lets its first key table go when it grows
    # (or is cleared): the table waits in the free list with no dict freed,
    # and the next small dict took it with the line that made it.  Under
    # an asyncio loop on 3.10 the leak's tables were credited to the event
    # loop's frames, above the coroutine's line.  A tuple dies in between,
    # as in any real program: every wrapped deallocator empties the list.
    proc = run_python(
        child(
            """
            from pyleakhunt import lease

            KEYS = ("a", "b", "c", "d", "e", "f")

            def grow(i, out):
                d = {}
                for key in KEYS:  # the sixth key outgrows the first table
                    d[key] = i; grow_line = sys._getframe().f_lineno
                out.append(d)
                t = (i, -i)
                del t
                return grow_line

            held = lease.acquire(1, owner="test", fresh_objects=True)
            grown, kept = [], []
            for i in range(300):
                grow_line = grow(i, grown)
                kept.append({"id": i, "name": "x"}); here = sys._getframe().f_lineno
            stats = pyleakhunt.take_snapshot().statistics("lineno")
            count = {s.traceback[0].lineno: s.count for s in stats
                     if s.traceback[0].filename == "<string>"}
            # The 300 dicts and their 300 key tables (and the list's array).
            assert count.get(here, 0) >= 600, (count, here)
            # The 300 grown dicts and their 300 tables of 16 slots.
            assert count.get(grow_line, 0) <= 604, (count, grow_line)
            held.release()
            print("OK")
            """
        )
    )
    assert_clean(proc)


def test_tuples_and_floats_freed_right_after_a_full_collection_are_not_reused():
    # No list or dict dies between the collection and the churn: a dead
    # tuple or float must not wait in its free list for the next one made,
    # which would keep the dead one's line.
    proc = run_python(
        child(
            """
            import gc
            from pyleakhunt import lease

            def churn(a, b):
                t = (a, b)
                f = a * 1.5
                del t, f

            def keep(a, b, out):
                out.append((a, b)); out.append(a * 2.5); line = sys._getframe().f_lineno
                return line

            held = lease.acquire(1, owner="test", fresh_objects=True)
            out = []
            wrong = []
            for i in range(20):
                x, y = i + 0.5, i + 0.25
                gc.collect()
                churn(x, y)
                here = keep(x, y, out)
                for obj in out[-2:]:
                    tb = pyleakhunt.get_object_traceback(obj)
                    line = tb[0].lineno if tb else None
                    if line != here:
                        wrong.append((type(obj).__name__, line, here))
            assert not wrong, wrong
            held.release()
            print("OK")
            """
        ),
    )
    assert_clean(proc)


#: CPython's own tests of the types concerned, and of the collector (on
#: 3.13+ only dicts' key tables are concerned).
CPYTHON_TESTS = ["test_list", "test_dict", "test_tuple", "test_float", "test_gc"]
if sys.version_info < (3, 11):
    CPYTHON_TESTS += ["test_frame", "test_generators"]


def test_cpython_tests_of_these_types_pass_with_the_free_lists_kept_empty():
    if importlib.util.find_spec("test.test_dict") is None:
        pytest.skip("this Python was installed without its test package")
    proc = run_python(
        child(
            """
            import unittest
            from pyleakhunt import lease
            held = lease.acquire(1, owner="test", fresh_objects=True)
            assert _core.free_lists_kept_empty()
            suite = unittest.TestLoader().loadTestsFromNames(
                ["test." + name for name in %r]
            )
            result = unittest.TextTestRunner(stream=sys.stdout).run(suite)
            assert _core.free_lists_kept_empty()
            assert result.testsRun > 200, result.testsRun
            held.release()
            print("ALL PASSED" if result.wasSuccessful() else "SOME FAILED")
            """
            % (CPYTHON_TESTS,)
        ),
        timeout=600,
    )
    assert_clean(proc, stdout_has=("ALL PASSED",), stderr_empty=False)


def test_a_finalizer_asking_for_a_report_during_collect_does_not_deadlock():
    # collect=True runs a full collection for each sample; a finalizer it
    # runs may itself ask for a fresh report (a sample).
    proc = run_python(
        child(
            """
            import gc
            from pyleakhunt.web import attribution

            hunt = attribution.shared(interval=3600, collect=True)

            class AsksForAReport:
                def __del__(self):
                    hunt.report(refresh=0)

            cycle = AsksForAReport()
            cycle.me = cycle
            del cycle
            hunt.sample()
            attribution.reset()
            print("OK")
            """
        ),
        timeout=60,
    )
    assert_clean(proc)
