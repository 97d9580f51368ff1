"""The leak check finds a small leak while other small blocks are freed.

Its rule against one false alarm (a bounded cache of small objects whose
site gains a traced block each round while the process holds no more
blocks) compares the site's growth with the process's count of blocks.
Blocks freed meanwhile by anything else (another thread of a server or of
an xdist worker, or the call itself) must not make that comparison hide a
real leak: before the fix, one `object()` kept per call was missed in 20
checks of 40 beside a thread that made and freed objects (on a loaded
machine; it depends on when that thread runs).  Freeing older objects in
the call itself moves the count the same way, every time.
"""

from __future__ import annotations

from pyleakhunt import leakcheck

LEAKED = []
#: Small objects made before the check, freed 50 a call by the leaky call.
OLD = [object() for _ in range(2000)]


def leak_one_and_free_old_objects() -> None:
    LEAKED.append(object())
    del OLD[-50:]


def test_a_small_leak_is_found_while_other_small_blocks_are_freed():
    report = leakcheck.check(leak_one_and_free_old_objects, rounds=5, warmup=2)
    assert report.leaked, report
    lines = [site.traceback[-1].lineno for site in report.sites]
    assert leak_one_and_free_old_objects.__code__.co_firstlineno + 1 in lines
