"""Objects handed out by CPython's free lists, kept out of the leak check.

An object that CPython takes from a free list (lists, dicts, small tuples,
floats) is created without an allocation.  Before Python 3.13 a tracer
cannot see that at all: the block keeps the site of its first life, which
may be any line of the program, and a bounded cache of lists (a full
``lru_cache``) then looks like a line whose live blocks grow a little in
every round.  On 3.13 the core moves a reused block to its new site, but
objects that merely wait in a free list still count as alive.

So between rounds the leak check pushes the free lists' contents out with
untraced objects (`flush`), and, before 3.13, refills them with objects made
*here* (`refill`) before each call, leaving this module's site out of the
count.  The price: a leak made only of such reused objects (an empty list,
a small tuple of small ints, a float per call) is not seen; anything that
allocates (an object, a list with items, a string, a big int) is.
"""

from __future__ import annotations

import sys

from .snapshot import untraced

#: Set when free-list reuse is invisible to the tracer.
NEEDED = sys.version_info < (3, 13)

#: Objects allocated in this file are left out of the leak check.
FILE = __file__[:-1] if __file__.endswith(".pyc") else __file__

#: What CPython keeps in its free lists at most (3.9 to 3.12): 80 lists,
#: 80 dicts, 100 floats, 2000 tuples of each size below 20 (the common
#: sizes are enough).
_KINDS = (
    (lambda i: [], 80),
    (lambda i: {}, 80),
    (lambda i: i + 0.5, 100),
) + tuple(((lambda i, size=size: (i,) * size), 2000) for size in range(1, 8))


def refill() -> None:
    """Fill the free lists with objects whose site is this module."""
    for make, count in _KINDS:
        # Tuples of 80 or more hold the batches: no free list of their own.
        drained = tuple(make(i) for i in range(count))  # empties the list
        primed = tuple(make(i) for i in range(count))  # so these are new
        del primed  # they fill the free list...
        del drained  # ...which is full: these go back to the allocator


@untraced
def flush() -> None:
    """Push what waits in the free lists out, with untraced objects.

    After the code under test ran: objects that merely wait in a free list
    are alive to the allocator and must not count as alive, and what pytest
    or the check itself then takes from a free list must not count as the
    code's.
    """
    refill()
