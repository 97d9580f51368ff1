"""Samples keep their interval behind an event loop that hogs the GIL.

An asyncio loop of many small tasks gives the GIL up around every
``select()`` and takes it back at once, and CPython then never asks it to
let a waiting thread in: the sampling thread waited for the GIL each time
a sample gave it up, and a watcher at 0.2 s took 4 samples in 3 s.  The
main thread now gives the GIL up for an overdue sample
(src/gil_handoff.c).
"""

from __future__ import annotations

import json

import pytest
from helpers import assert_clean, run_python

BUSY_LOOP = """
import asyncio, json, os, sys, tempfile, time
from pyleakhunt import _core
from pyleakhunt.watcher import LeakWatcher

KEPT = []

async def task(k, seconds):
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        for _ in range(50):
            x += 1
        if k == 0:
            KEPT.append({"n": x})
        await asyncio.sleep(0)

async def main(seconds):
    await asyncio.gather(*(task(k, seconds) for k in range(50)))

def hunt(seconds, stop=True):
    path = os.path.join(tempfile.mkdtemp(), "timeline.plh")
    watcher = LeakWatcher(interval=0.2, path=path).start()
    asyncio.run(main(seconds))
    if stop:
        watcher.stop()
    print(json.dumps({"samples": len(watcher.samples),
                      "stats": _core.gil_handoff_stats()}))
    sys.stdout.flush()
"""


def run_busy_loop(body: str) -> dict:
    proc = run_python(BUSY_LOOP + body, timeout=120)
    assert_clean(proc, stdout_has=("samples",))
    return json.loads(proc.stdout.splitlines()[-1])


def test_a_busy_event_loop_is_sampled_about_every_interval():
    result = run_busy_loop("hunt(3.0)\n")
    # 15 are due in 3 s; starved, the watcher took 3 or 4.  (When the
    # machine's load lets it in anyway, the main thread is asked nothing.)
    assert result["samples"] >= 10, result


def test_a_forked_child_gets_the_gil_for_its_own_watcher():
    # The parent's watching thread (a C one) does not survive the fork;
    # nor is it left running once the parent's watcher stopped (os.fork()
    # would warn of threads from 3.12: the child's stderr must be empty).
    result = run_busy_loop(
        """
hunt(0.5)
pid = os.fork()
if pid == 0:
    try:
        hunt(3.0)
    finally:
        os._exit(0)
_, status = os.waitpid(pid, 0)
assert status == 0, status
"""
    )
    assert result["samples"] >= 10, result


@pytest.mark.parametrize("stop", [True, False], ids=["stopped", "left_running"])
def test_a_program_exits_cleanly_with_the_sampler_armed(stop):
    # Left running, the daemon sampling thread is armed as Python shuts
    # down: the main thread is then asked for nothing.
    result = run_busy_loop(f"hunt(0.5, stop={stop})\n")
    assert result["samples"] >= 1, result
