"""``pyleakhunt run --interval S`` samples every S seconds behind a busy
program.

The samples come from a background thread (pyleakhunt/sampler.py), which
must win the GIL from the program's main thread for each of them.  Behind
a busy asyncio loop (coroutines that compute and rarely wait) a sample
took 50 to 110 ms for some 30 ms of CPU, every time it gave the GIL up
costing it up to the switch interval to get it back, and the next sample
came *interval* after that: ``--interval 0.25`` sampled every 0.31 to
0.39 s.  The test reads the spacing from the timeline's timestamps.

Each sample also gives the GIL up as few times as it can: the resident
set size, which Python's open(), read() and close() read with eight
releases of the GIL, is read in C.
"""

from __future__ import annotations

import statistics
import textwrap
from pathlib import Path
from typing import List

import pytest
from helpers import UNDER_ASAN, assert_clean, run_cli, run_python

from pyleakhunt import fileformat

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
def test_samples_keep_their_interval_behind_a_busy_asyncio_loop(tmp_path):
    script = tmp_path / "busy.py"
    script.write_text(BUSY_ASYNCIO)
    interval = 0.25
    out = tmp_path / "out"
    proc = run_cli("run", "--interval", str(interval), "-o", str(out), str(script), "3")
    assert proc.returncode == 0, proc.stderr
    gaps = sample_gaps(out)
    assert len(gaps) >= 6, gaps
    # Each call is due an interval after the one before was due: its own
    # length (at least its CPU time, some 30 ms, and twice that behind
    # the busy loop) and its late start (up to a switch interval, 5 ms)
    # no longer add up.  A loaded machine delays some samples, not most.
    assert statistics.median(gaps) < interval * 1.08, gaps


def test_a_sample_opens_no_file_on_the_sampling_thread():
    # Python's file calls give the GIL up (open, fstat, isatty, lseek,
    # read, close): reading /proc/self/statm at every sample cost about
    # eight releases, each worth up to a switch interval behind a busy
    # main thread.  The audit hook sees every open() and os.open().
    proc = run_python(
        """
        import os, sys, tempfile, threading, time
        opened = []

        def hook(event, args):
            if event == "open" and threading.current_thread().name.startswith(
                "pyleakhunt-"
            ):
                opened.append(args[0])

        sys.addaudithook(hook)
        from pyleakhunt.watcher import LeakWatcher

        path = os.path.join(tempfile.mkdtemp(), "timeline.plh")
        watcher = LeakWatcher(interval=0.02, path=path).start()
        kept = []
        while len(watcher.samples) < 6:  # five on the sampling thread
            kept.append(str(len(kept)))
        watcher.stop()
        assert opened == [], opened
        print("OK")
        """
    )
    assert_clean(proc)
