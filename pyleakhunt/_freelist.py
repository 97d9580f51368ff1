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
(`FreeLists`): it takes their objects and holds them, so that what a call
creates of these types is freshly allocated, and traced at its own line;
and what the call freed into them is taken out and really freed before
measuring.

This costs a few thousand object creations a round (about a
millisecond): the objects that fill the free lists are made again each
round.  Tuples of up to `TUPLE_SIZES` items are covered; a larger tuple,
or an object of a type missing here, can still come from a free list
unseen.
"""

from __future__ import annotations

import sys
from itertools import repeat
from typing import Any, Callable, List, Optional, Tuple

from . import _core

#: Allocations in this file are the check's own (3.13+'s reference tracer
#: moves a reused traced block here when the check takes it): left out.
FILE = __file__[:-1] if __file__.endswith(".pyc") else __file__

#: Tuples of 1 to TUPLE_SIZES items are taken from their free lists.
TUPLE_SIZES = 8


class _Bound:
    def method(self) -> None:
        """Reading it makes a bound method (3.14+ keeps 20 in a free list)."""


def _tuples(size: int) -> Callable[[int], List[Any]]:
    def make(count: int) -> List[Any]:
        # zip makes a fresh result tuple when the last one is still held,
        # in C: the cheapest way to make thousands of tuples.
        items = repeat(None, count * size)
        return list(zip(*([items] * size)))

    return make


#: A kind of object: how to make *n* of them, how many its free list
#: holds at most (CPython 3.10 to 3.15), and how many to make at a time
#: when taking only what the free list holds.
_Kind = Tuple[Callable[[int], List[Any]], int, int]


def _ints(count: int) -> List[Any]:
    """*count* new ints, freeing none (3.14+ keeps ints in a free list).

    Not ``range(big, big + count)``, whose end is an int of its own, freed
    with the range into the free list just emptied; nor ``map()`` over two
    iterables, which frees a 2-tuple (3.12+ inlines the comprehension).
    """
    big = 1 << 20
    return [big + i for i in range(count)]


#: How many ints to take after everything else: reading the count of
#: blocks (`_take`) makes ints and frees them into their free list, and a
#: few may be left there, in untraced blocks; the next int the code under
#: test made would be one of them, and an int kept per call went unseen.
#: A handful at most: the reads and their differences, ``before`` and
#: ``made`` (see `_take_until_dry`); this many leave a margin.
_INT_SLACK = 16

#: Whether ints have a free list (3.14+).
_TAKE_INTS_LAST = sys.version_info >= (3, 14)


def _kinds() -> List[_Kind]:
    """What to make to empty each free list, in the order to make it."""
    kinds: List[_Kind] = [
        (lambda n: [[] for _ in range(n)], 80, 80),
        (lambda n: [{} for _ in range(n)], 80, 80),
        # Empty dicts share one key table: these make their own, smallest.
        (lambda n: [{"k": None} for _ in range(n)], 80, 80),
        (lambda n: list(map(float, range(n))), 100, 100),
    ]
    kinds += [(_tuples(size), 2000, 100) for size in range(1, TUPLE_SIZES + 1)]
    if sys.version_info >= (3, 14):
        bound = _Bound()
        held: List[Any] = []
        kinds += [
            (_ints, 100, 100),
            (lambda n: list(map(getattr, repeat(bound, n), repeat("method"))), 20, 20),
            (lambda n: list(map(getattr, repeat(held, n), repeat("append"))), 16, 16),
        ]
    if sys.version_info >= (3, 15):
        # Not complex(int): it makes a float and frees it, into the float
        # free list just emptied; each call then took that float, in an
        # untraced block, and a float kept per call went unseen.  Adding
        # two complexes makes the sum only.
        zero = 0j
        kinds.append((lambda n: [zero + zero for _ in range(n)], 100, 100))
    # Making the tuples frees a few lists and tuples (zip's argument
    # tuples): take those again, without freeing any; 1-tuples last
    # (making tuples frees argument tuples).  Ints freed by reading the
    # count of blocks are taken after all of these (`_take`).
    kinds += [
        (lambda n: [[] for _ in range(n)], 64, 16),
        (
            lambda n: [
                (None,) * s for s in range(2, TUPLE_SIZES + 1) for _ in range(n)
            ],
            64,
            16,
        ),
        (lambda n: [(i,) for i in range(n)], 256, 16),
    ]
    return kinds


_KINDS = _kinds()

#: A chunk that made this many more blocks than objects it took from the
#: free list ran it dry.  What else a chunk allocates (the list holding
#: it, a zip object, the count read before it) is a few blocks: below.
_FRESH = 16


def _take_until_dry(
    make: Callable[[int], List[Any]], capacity: int, chunk: int, into: List[Any]
) -> None:
    """Take objects of one kind in chunks, until a chunk is freshly made.

    The counts read here, their difference, and ``made`` past 256 are ints
    made and freed; in a function of its own, so that the last of them
    are freed when it returns, before `_take` takes the ints again.
    """
    blocks = sys.getallocatedblocks
    # (min() would free its argument tuple into a free list.)
    fresh = _FRESH if _FRESH < chunk else chunk
    made = 0
    while made < capacity:
        before = blocks()
        into.append(make(chunk))
        made += chunk
        if blocks() - before >= fresh:
            break


def _take(everything: bool, into: List[Any]) -> None:
    """Take the free lists' objects, in chunks, and add them to *into*.

    With *everything*, as many of each kind as its free list can hold.
    Otherwise until a chunk shows fresh allocations (the free list is then
    empty): the cost follows what the free lists hold.  Without pymalloc
    (``PYTHONMALLOC=malloc``) the count of blocks does not move, and the
    free lists are emptied in full.

    Nothing of a kind taken may be freed after it: hence no keyword
    arguments, no ``untraced`` wrapper (which would free its argument
    tuple and keyword dict), and lists that are added to, never replaced.
    """
    for make, capacity, chunk in _KINDS:
        if everything:
            into.append(make(capacity))
        else:
            _take_until_dry(make, capacity, chunk, into)
    if _TAKE_INTS_LAST:
        into.append(_ints(_INT_SLACK))


class FreeLists:
    """Keeps the free lists empty around the calls of a leak check.

    Made when tracing starts: it takes every object the free lists hold
    (the *reserve*, untraced) and keeps them empty between calls.  Around
    each call:

    - `before_call` takes what code run since (the test's fixtures) freed
      into them;
    - `after_call` takes what the call freed into them, then gives the
      reserve back, which fills them, so that everything else taken is
      really freed when dropped next; and takes the reserve again.

    So the call's new objects are freshly allocated, and what it freed
    does not wait in a free list, counted as alive, when measured.
    """

    __slots__ = ("_reserve", "_held")

    def __init__(self) -> None:
        self._reserve: List[Any] = []
        self._held: List[Any] = []
        was_paused = _core.pause_thread(True)
        try:
            _take(True, self._reserve)
        finally:
            _core.pause_thread(was_paused)

    def before_call(self) -> None:
        """Empty the free lists again, just before the call."""
        was_paused = _core.pause_thread(True)
        try:
            _take(False, self._held)
        finally:
            _core.pause_thread(was_paused)
        _CURRENT.lists = self

    def again(self) -> None:
        """Empty the free lists again, within the call."""
        was_paused = _core.pause_thread(True)
        try:
            _take(False, self._held)
        finally:
            _core.pause_thread(was_paused)

    def after_call(self) -> None:
        """Free what the call left in the free lists; leave them empty."""
        _CURRENT.lists = None
        was_paused = _core.pause_thread(True)
        try:
            _take(False, self._held)
            self._reserve.clear()  # fills the free lists...
            self._held.clear()  # ...so that these are really freed
            _take(True, self._reserve)
        finally:
            _core.pause_thread(was_paused)

    def close(self) -> None:
        """Give the reserve back."""
        _CURRENT.lists = None
        self._reserve.clear()
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
