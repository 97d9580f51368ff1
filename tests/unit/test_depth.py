"""The stack depth the tracer records (``Traceback.total_nframe``).

From 3.12 the tracer reads the depth from the interpreter's count of
entered frames instead of walking the whole stack (src/frames.c).  The
core's depth check counts it again by walking, on every allocation the
general path records, so these tests compare the two over every stack
shape a program makes: any difference, on any allocation, fails them.
"""

import asyncio
import gc
import sys
import threading

import pytest

import pyleakhunt
from pyleakhunt import _core


@pytest.fixture
def depth_check():
    """Trace with the depth check on; yields a function that returns the
    (checked, wrong) counts so far."""
    pyleakhunt.start(3)
    _core._check_depth(True)
    try:
        yield lambda: _core._check_depth(True)
    finally:
        _core._check_depth(False)
        pyleakhunt.stop()


def recurse(depth, work):
    if depth:
        return recurse(depth - 1, work)
    return work()


def with_cells(n):
    # The cells are made before the frame starts (MAKE_CELL): the
    # interpreter has entered the frame, and the depth must not count it.
    total = [n]

    def inner():
        return total + [n]

    return inner()


def generator(n):
    for i in range(n):
        yield [i] * 3


def generator_with_cells(n):
    kept = {}

    def add(i):
        kept[i] = (i, str(i))

    for i in range(n):
        add(i)
        yield kept


async def coroutine(n):
    out = []
    for i in range(n):
        await asyncio.sleep(0)
        out.append({"i": i})
    return out


async def async_generator(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield (i, str(i))


async def main_coroutine():
    made = await asyncio.gather(coroutine(5), coroutine(3))
    made.append([x async for x in async_generator(4)])
    return made


class MadeInClassBody:
    table = {str(i): [i] for i in range(10)}


class Finalized:
    kept = []

    def __del__(self):
        Finalized.kept.append(["finalized", id(self)])


def raises(depth):
    if depth:
        return raises(depth - 1)
    raise ValueError("x" * 50)


def every_shape():
    kept = []
    kept.append(recurse(30, lambda: [1, 2, 3]))
    kept.append(recurse(5, lambda: with_cells(7)))
    kept.append(list(generator(5)))
    # The same generator resumed from callers at different depths.
    gen = generator(10)
    kept.append(next(gen))
    kept.append(recurse(12, lambda: next(gen)))
    kept.append(recurse(3, lambda: next(gen)))
    kept.append([next(g) for g in [generator_with_cells(3)] * 3])
    kept.append(asyncio.run(main_coroutine()))
    kept.append(sorted(range(20), key=lambda i: str(-i)))
    kept.append(list(map(lambda i: (i, [i]), range(10))))
    kept.append(MadeInClassBody.table)
    kept.append(eval("[str(i) for i in range(5)]"))
    namespace = {}
    exec("def f(n):\n    return {n: [n]}\nresult = f(3)", namespace)
    kept.append(namespace["result"])
    for depth in (0, 4, 15):
        try:
            recurse(3, lambda depth=depth: raises(depth))
        except ValueError as error:
            kept.append(error)
    recurse(6, lambda: Finalized())
    gc.collect()
    kept.append(Finalized.kept)
    return kept


def test_recorded_depth_equals_the_walked_one_in_every_stack_shape(
    depth_check,
):
    every_shape()
    checked, wrong = depth_check()
    assert checked > 1000
    assert wrong == 0


def test_recorded_depth_is_right_under_a_trace_function(depth_check):
    sys.settrace(lambda *args: None)
    try:
        every_shape()
    finally:
        sys.settrace(None)
    checked, wrong = depth_check()
    assert checked > 1000
    assert wrong == 0


def test_recorded_depth_is_right_in_threads(depth_check):
    results = []

    def run():
        results.append(recurse(10, every_shape))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    checked, wrong = depth_check()
    assert checked > 3000
    assert wrong == 0


def test_recorded_depth_survives_a_change_of_the_recursion_limit(depth_check):
    limit = sys.getrecursionlimit()

    def change_and_work():
        sys.setrecursionlimit(limit + 500)
        try:
            return every_shape()
        finally:
            sys.setrecursionlimit(limit)

    recurse(20, change_and_work)
    checked, wrong = depth_check()
    assert checked > 1000
    assert wrong == 0


def test_recorded_depth_is_right_after_a_recursion_error(depth_check):
    def forever(n):
        return forever(n + 1)

    with pytest.raises(RecursionError):
        recurse(5, lambda: forever(0))
    every_shape()
    checked, wrong = depth_check()
    assert checked > 1000
    assert wrong == 0
