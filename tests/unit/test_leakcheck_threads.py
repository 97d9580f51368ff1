"""The leak check finds a small leak while other threads allocate and free.

Its rule against one false alarm (a bounded cache of small objects whose
site gains a traced block each round while the process holds no more
blocks) compares the site's growth with the process's count of blocks.
Another thread that frees small blocks meanwhile must not make that
comparison hide a real leak: before the fix, a leak of one `object()` per
call was missed in 20 checks of 40 beside such a thread.
"""

from __future__ import annotations

import threading
import time

from pyleakhunt import leakcheck

LEAKED = []


def leak_one() -> None:
    LEAKED.append(object())


def test_a_small_leak_is_found_while_another_thread_frees_small_blocks():
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            junk = [object() for _ in range(50)]
            time.sleep(0.0005)
            del junk
            time.sleep(0.0005)

    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    try:
        missed = sum(
            not leakcheck.check(leak_one, rounds=5, warmup=2).leaked for _ in range(20)
        )
    finally:
        stop.set()
        worker.join(10)
    assert missed == 0, "a leak of one object per call missed %d times in 20" % missed
