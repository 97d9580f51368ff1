"""The hooks read the calling thread's state where CPython keeps it.

From 3.12 the thread state is a thread-local variable of CPython's.  When
CPython is linked into the executable, the hooks read that variable
themselves instead of calling PyThreadState_GetUnchecked() (frames.c,
lh_frames_tstate_offset).  A wrong offset would give every hook another
thread's state, or garbage.
"""

from __future__ import annotations

import sys
import threading
from typing import List, Tuple

import pytest

from pyleakhunt import _core


def libpython_is_a_shared_library() -> bool:
    with open("/proc/self/maps") as maps:
        return any("libpython" in line for line in maps)


def test_the_hooks_read_of_the_thread_state_agrees_with_cpython_in_every_thread():
    results: List[Tuple[int, bool]] = []

    def check() -> None:
        results.append(_core._check_tstate())

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    check()
    assert len(results) == 5
    assert all(same for _, same in results), results
    assert len({offset for offset, _ in results}) == 1


@pytest.mark.skipif(
    sys.version_info < (3, 12),
    reason="before 3.12 the thread state is a field of the runtime, which "
    "the hooks read inline already",
)
@pytest.mark.skipif(
    libpython_is_a_shared_library(),
    reason="a shared libpython reads its thread-local variable through "
    "__tls_get_addr, so the hooks call CPython for the thread state",
)
def test_the_thread_state_is_read_inline_when_cpython_is_in_the_executable():
    offset, same = _core._check_tstate()
    assert offset != 0
    assert same
