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

import _thread
import threading

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


class _Freer:
    """A thread that frees *per_call* old objects each time it is asked.

    The handshake uses raw locks, which allocate nothing, so that the
    process's count of blocks moves by exactly what the two threads do:
    one block kept, two freed, a round after round of -1.
    """

    def __init__(self, per_call: int) -> None:
        self.per_call = per_call
        self.old = [object() for _ in range(1000)]
        self.go = _thread.allocate_lock()
        self.done = _thread.allocate_lock()
        self.go.acquire()
        self.done.acquire()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            self.go.acquire()
            if self.stopping:
                return
            del self.old[-self.per_call :]
            self.done.release()

    def free_some(self) -> None:
        self.go.release()
        self.done.acquire()

    def stop(self) -> None:
        self.stopping = True
        self.go.release()
        self.thread.join()


def test_a_small_leak_is_found_while_another_thread_frees_as_many():
    freer = _Freer(per_call=2)
    leaked = []

    def leak_one_while_another_thread_frees_two() -> None:
        leaked.append(object())
        freer.free_some()

    try:
        report = leakcheck.check(
            leak_one_while_another_thread_frees_two, rounds=5, warmup=2
        )
    finally:
        freer.stop()
    assert report.leaked, report
    lines = [site.traceback[-1].lineno for site in report.sites]
    assert leak_one_while_another_thread_frees_two.__code__.co_firstlineno + 1 in lines
