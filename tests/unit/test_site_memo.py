"""The site memo: the common case's shortcut to an allocation's site.

With one frame and exact counts (tracemalloc's default), the tracer keeps
the sites it found for recent positions, each with its position: the top
frame, its instruction, the depth of the stack and the request tag
(src/frames.h, lh_position), in a small table indexed by instruction.
The next allocation at one of those positions takes its site without
capturing the frame.  The core's memo check turns
the memo off and compares the site it would have given with the one found
the full way, on every allocation: any difference fails these tests.
Each test makes allocations that differ from the one before in one part
of the position only, so that a memo which left that part out would give
them the wrong site.
"""

import contextvars
import sys

import pytest
from test_depth import every_shape, recurse

import pyleakhunt
from pyleakhunt import _core

TAG = contextvars.ContextVar("pyleakhunt_memo_tag", default=0)


# Before 3.12 only a walk of the stack counts its depth, so with
# total_nframe the memo could save nothing: it is not used.
MEMO_WITH_DEPTH = sys.version_info >= (3, 12)


@pytest.fixture(params=[True, False], ids=["total_nframe", "no_total_nframe"])
def memo_check(request):
    """Trace one frame with the memo check on; yields a function that
    returns the (checked, wrong) counts so far."""
    if request.param and not MEMO_WITH_DEPTH:
        pytest.skip("before 3.12 the memo is not used with total_nframe")
    pyleakhunt.start(1, total_nframe=request.param)
    _core._check_memo(True)
    try:
        yield lambda: _core._check_memo(True)
    finally:
        _core._check_memo(False)
        pyleakhunt.stop()


def leaf():
    # Allocates twice (the object, then its buffer), in one instruction.
    return bytearray(64)


def recurse_small(depth, work):
    if depth:
        return recurse_small(depth - 1, work)
    return work()


def recurse_big(depth, work):
    # More locals than recurse_small: a bigger frame, so that a frame above
    # this one can sit at the same address as one above recurse_small at
    # another depth.
    a = b = c = d = e = f = g = h = i = j = k = depth
    if depth:
        return recurse_big(depth - 1, work)
    return work(), (a, b, c, d, e, f, g, h, i, j, k)


def test_the_memo_gives_the_full_way_site_in_every_stack_shape(memo_check):
    every_shape()
    checked, wrong = memo_check()
    assert checked > 300
    assert wrong == 0


def test_the_memo_tells_depths_apart_at_one_frame_address(memo_check):
    # The same instruction of `leaf`, right after itself, from stacks of
    # every pair of depths: some pairs put its frame at the same address.
    # The argument ints are small: nothing else is allocated in between.
    kept = []
    for small in range(40):
        for big in range(40):
            kept.append((recurse_small(small, leaf), recurse_big(big, leaf)))
    checked, wrong = memo_check()
    assert checked > 3000
    assert wrong == 0


def test_the_memo_tells_apart_instructions_that_share_a_slot(memo_check):
    # The memo keeps one entry per slot, chosen by instruction: a function
    # with many more allocating instructions than it has slots runs them
    # in turn, so each finds the entry of another instruction in its slot.
    source = "def many():\n"
    source += "".join(f"    x{i} = [{i}]\n" for i in range(300))
    source += "    return x0\n"
    namespace = {}
    exec(compile(source, "<slots>", "exec"), namespace)
    for _ in range(5):
        namespace["many"]()
    checked, wrong = memo_check()
    assert checked > 1000
    assert wrong == 0


def test_the_memo_tells_tags_apart_in_one_instruction(memo_check):
    _core.set_tag_var(TAG)
    try:
        contexts = []
        for tag in (1, 2, 3):
            context = contextvars.copy_context()
            context.run(TAG.set, tag)
            contexts.append(context)
        # Context.run enters each context inside the same call
        # instruction, so only the tag tells these allocations apart.
        kept = [context.run(bytearray, 64) for context in contexts * 200]
    finally:
        _core.set_tag_var(None)
    checked, wrong = memo_check()
    assert len(kept) == 600
    assert checked > 300
    assert wrong == 0


def with_cell(n, make=False):
    # `n` is a cell, made before the frame starts (MAKE_CELL): the frame
    # that allocates it is the caller's, below.  Nothing else allocates.
    if make:
        return lambda: n
    return None


def call_one():
    return with_cell(1)


def call_two():
    return with_cell(2)


def test_the_memo_keeps_no_frame_that_has_not_started(memo_check):
    # with_cell's frame sits at one address and runs one instruction when
    # it makes its cell, whichever of two callers called it.
    for _ in range(200):
        call_one()
        call_two()
    checked, wrong = memo_check()
    assert wrong == 0


def test_the_memo_forgets_sites_a_snapshot_releases(memo_check):
    # Code compiled on the fly dies once run; the snapshot then releases
    # its sites, and new code may take the same addresses.
    for i in range(50):
        namespace = {}
        exec(compile(f"x = [{i}] * 8\ny = ({i}, [{i}])", "<memo>", "exec"), namespace)
        del namespace
        pyleakhunt.take_snapshot(traces=False)
    every_shape()
    checked, wrong = memo_check()
    assert checked > 300
    assert wrong == 0


def test_the_memo_is_right_under_a_trace_function(memo_check):
    sys.settrace(lambda *args: None)
    try:
        every_shape()
    finally:
        sys.settrace(None)
    checked, wrong = memo_check()
    assert checked > 300
    assert wrong == 0


def test_the_memo_check_counts_nothing_once_off():
    pyleakhunt.start(1, total_nframe=MEMO_WITH_DEPTH)
    try:
        _core._check_memo(True)
        recurse(5, every_shape)
        checked, wrong = _core._check_memo(False)
        assert checked > 300
        every_shape()
        assert _core._check_memo(False) == (0, 0)
    finally:
        pyleakhunt.stop()
