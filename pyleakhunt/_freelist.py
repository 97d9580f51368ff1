"""Keep CPython's free lists from hiding what a leak check measures.

CPython keeps the memory of some dead objects (lists, dicts, small tuples,
floats; on 3.14 also ints, bound methods and more) in free lists, and
creates new objects of those types in it without an allocation.  Two
consequences for a leak check:

- Before 3.13 a tracer cannot see such a creation at all: the block keeps
  the site of its first life, or stays untraced if that life began before
  tracing.  A list appended to a global list on every call then shows up
  nowhere, or somewhere else.  (3.13's reference tracer moves a reused
  traced block to its new site, but cannot move an untraced one.)
- A dead object waiting in a free list is still a live block to the
  allocator, counted at its site.

So the leak check keeps the free lists empty while it measures
(`FreeLists`): a full collection just before each call frees what they
hold, so that what the call creates of these types is freshly allocated,
and traced at its own line; and one just after it frees what the call
left in them before measuring.

Every free list is emptied so, of every type and size, on every CPython
from 3.10 to 3.15.  This once took the objects out instead, kind by
kind, and read the count of blocks to know when each list was dry: in a
large test run that cost tens of milliseconds a check (the count walks
every pool of the allocator).
"""

from __future__ import annotations

import gc
import sys
from typing import Any, List, Optional

from . import _core

#: Allocations in this file are the check's own (3.13+'s reference tracer
#: moves a reused traced block here): left out.
FILE = __file__[:-1] if __file__.endswith(".pyc") else __file__


def _ints(count: int) -> List[Any]:
    """*count* new ints, freeing none (3.14+ keeps ints in a free list).

    Not ``range(big, big + count)``, whose end is an int of its own, freed
    with the range into the free list just emptied; nor ``map()`` over two
    iterables, which frees a 2-tuple (3.12+ inlines the comprehension).
    """
    big = 1 << 20
    return [big + i for i in range(count)]


#: How many ints to take after a collection: its result, when above 256,
#: is an int freed into their free list, in a block traced here or not at
#: all; the next int the code under test made would be it, and an int
#: kept per call went unseen.  One at most; this many leave a margin.
_INT_SLACK = 16

#: Whether ints have a free list (3.14+).
_TAKE_INTS_LAST = sys.version_info >= (3, 14)


def _empty(into: List[Any]) -> None:
    """Empty the free lists, adding what must be held to *into*.

    A full collection frees every object the free lists hold, on every
    CPython from 3.10 to 3.15, in one pass over the objects not frozen
    (few: the leak check freezes the older ones).  Taking the objects out
    one kind at a time instead reads the count of blocks, which walks
    every pool of the allocator: milliseconds a round in a large test run.

    What runs after the free lists are cleared must put nothing back:

    - ``gc.callbacks`` would (their info dict, and their own code; a dict
      kept per call was then missed), so they are not told of this
      collection, which is the check's, not the program's;
    - the collection's result, an int, is freed into the int free list
      (3.14+): taken by making ints.

    Not paused: the finalizers the collection runs are the code under
    test's, and are traced.
    """
    callbacks = gc.callbacks
    if callbacks:
        # A copy held until the call is over: freed, it would go to the
        # list free list.
        saved = callbacks[:]
        into.append(saved)
        del callbacks[:]
        try:
            gc.collect()
        finally:
            callbacks.extend(saved)
    else:
        gc.collect()
    if _TAKE_INTS_LAST:
        was_paused = _core.pause_thread(True)
        try:
            into.append(_ints(_INT_SLACK))
        finally:
            _core.pause_thread(was_paused)


class FreeLists:
    """Keeps the free lists empty around the calls of a leak check.

    Around each call:

    - `before_call` empties them of what code run since (the test's
      fixtures, the check's own measure) freed into them;
    - `after_call` empties them of what the call freed into them.

    So the call's new objects are freshly allocated, and what it freed
    does not wait in a free list, counted as alive, when measured.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: List[Any] = []

    def before_call(self) -> None:
        """Empty the free lists again, just before the call."""
        _empty(self._held)
        _CURRENT.lists = self

    def again(self) -> None:
        """Empty the free lists again, within the call."""
        _empty(self._held)

    def after_call(self) -> None:
        """Free what the call left in the free lists; leave them empty."""
        _CURRENT.lists = None
        self._held.clear()  # into the free lists, or freed...
        _empty(self._held)  # ...and then freed

    def close(self) -> None:
        """Let go of what is held."""
        _CURRENT.lists = None
        self._held.clear()


class _Current:
    """The `FreeLists` of the running call, if any (set without
    allocating: a temporary list or tuple would go to a free list just
    emptied)."""

    __slots__ = ("lists",)

    def __init__(self) -> None:
        self.lists: Optional[FreeLists] = None


_CURRENT = _Current()


def again() -> None:
    """Empty the free lists again, if a call is running with them emptied.

    For a harness that runs code of its own between `FreeLists.before_call`
    and the code under test (unittest's ``TestCase.run``): what it freed
    into the free lists meanwhile would otherwise be reused by that code.
    """
    if _CURRENT.lists is not None:
        _CURRENT.lists.again()
