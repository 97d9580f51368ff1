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
import statistics
import textwrap
from pathlib import Path
from typing import List

import pytest
from helpers import UNDER_ASAN, assert_clean, run_cli, run_python

from pyleakhunt import fileformat

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
    assert result["samples"] >= 8, result


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
    assert result["samples"] >= 8, result


@pytest.mark.parametrize("stop", [True, False], ids=["stopped", "left_running"])
def test_a_program_exits_cleanly_with_the_sampler_armed(stop):
    # Left running, the daemon sampling thread is armed as Python shuts
    # down: the main thread is then asked for nothing.
    result = run_busy_loop(f"hunt(0.5, stop={stop})\n")
    assert result["samples"] >= 1, result


#: Computes, rarely waits, and keeps some of what it makes (a few hundred
#: lines of its own, so that a sample has work to do: reducing and
#: writing it take some 30 ms of the sampling thread's CPU here).
BUSY_ASYNCIO = textwrap.dedent(
    """
    import asyncio, sys, time

    kept = []
    NS = {"kept": kept}
    # Many lines that allocate, each its own site in the timeline.
    exec(compile("def make(i):\\n" + "".join(
        "    if i == %d: kept.append(str(i) * 3)\\n" % n for n in range(300)
    ), "busy_lines.py", "exec"), NS)

    async def worker(end):
        i = 0
        while time.monotonic() < end:
            x = 0
            for j in range(20000):
                x += j * j
            NS["make"](i % 300)
            i += 1
            await asyncio.sleep(0)

    async def main(seconds):
        end = time.monotonic() + seconds
        await asyncio.gather(*(worker(end) for _ in range(4)))

    asyncio.run(main(float(sys.argv[1])))
    """
)


def sample_gaps(directory: Path) -> List[float]:
    """Seconds between the timeline's samples, the last (stop()'s closing
    sample, taken when the program ends) left out."""
    (path,) = directory.glob("*.plh")
    times = [entry.timestamp for entry in fileformat.iter_timeline(path)]
    return [b - a for a, b in zip(times, times[1:])][:-1]


@pytest.mark.skipif(
    UNDER_ASAN,
    reason="under AddressSanitizer a sample computes for longer than the "
    "interval allows, and the gap is then the sample's own length, as "
    "sampler._next_due means it to be; the other runs check the spacing",
)
def test_run_samples_keep_their_interval_behind_coroutines_that_compute(tmp_path):
    # A sample took 50 to 110 ms for some 30 ms of CPU behind these four
    # coroutines (each time it gave the GIL up, getting it back cost up to
    # a switch interval), and the next was due an interval after it
    # returned: --interval 0.25 sampled every 0.31 to 0.39 s.
    script = tmp_path / "busy.py"
    script.write_text(BUSY_ASYNCIO)
    interval = 0.25
    out = tmp_path / "out"
    proc = run_cli("run", "--interval", str(interval), "-o", str(out), str(script), "3")
    assert proc.returncode == 0, proc.stderr
    gaps = sample_gaps(out)
    assert len(gaps) >= 6, gaps
    # Each call is due an interval after the one before was due: its own
    # length and its late start no longer add up.  A loaded machine delays
    # some samples, not most.
    assert statistics.median(gaps) < interval * 1.08, gaps
