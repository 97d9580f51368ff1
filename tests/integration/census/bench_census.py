"""Measure the census: seconds per GiB of core, and how long a live target
is stopped.  Not a test (pytest does not collect it); docs/census.md's
"Measured" section comes from it::

    python tests/census/bench_census.py [--gib 1.0] [--runs 3]

It starts a victim that fills about --gib of heap with a mix of objects
(instances with attribute dicts, slotted instances, lists, strs, ints,
floats, tuples, bytes), takes its core with gcore, then times
``census_core`` for the type table alone and with held-by chains, and
``census_process`` on the live victim.  Each figure is the median of
--runs runs; CPU seconds (user + system) are given beside wall seconds,
since the wall clock of a shared machine also counts other people's work.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(HERE))))

from census_victims import clean_env, take_core  # noqa: E402

from pyleakhunt.census import census_core, census_process  # noqa: E402

VICTIM = """
import os, sys, time

class Record:
    def __init__(self, i):
        self.id = i
        self.name = "record-%d" % i
        self.tags = [i, i + 1]
        self.score = i * 0.25

class Point:
    __slots__ = ("x", "y")
    def __init__(self, x, y):
        self.x = x
        self.y = y

class Store:
    items = {}

scale = float(sys.argv[1])
recs = [Record(i) for i in range(int(scale * 2_000_000))]
pts = [Point(i, -i) for i in range(int(scale * 1_000_000))]
for i in range(int(scale * 300_000)):
    Store.items["k%d" % i] = (i, b"%d" % i * 10)
print(os.getpid(), flush=True)
sys.stdin.read()
"""


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(run: Callable[[], object], runs: int) -> Tuple[float, float, object]:
    """(median wall seconds, median CPU seconds, last result)."""
    walls, cpus = [], []
    result = None
    for _ in range(runs):
        wall, cpu = time.perf_counter(), cpu_seconds()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(cpu_seconds() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="census-bench-")
    script = os.path.join(workdir, "victim.py")
    with open(script, "w") as f:
        f.write(VICTIM)
    victim = subprocess.Popen(
        [sys.executable, script, str(args.gib * 0.95)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert victim.stdout
    pid = int(victim.stdout.readline())
    try:
        started = time.perf_counter()
        core = take_core(pid, os.path.join(workdir, "core"))
        gcore_s = time.perf_counter() - started
        gib = os.path.getsize(core) / 2**30
        figures: Dict[str, Tuple[float, float]] = {}
        table_wall, table_cpu, census = timed(
            lambda: census_core(core, holders=0), args.runs
        )
        figures["type table (core)"] = (table_wall, table_cpu)
        held_wall, held_cpu, _ = timed(lambda: census_core(core), args.runs)
        figures["with held-by chains, 25 types (core)"] = (held_wall, held_cpu)
        stops = []
        for _ in range(args.runs):
            live = census_process(pid, holders=0)
            stops.append(live.timings["stopped_s"])
        live_gib = live.memory_bytes / 2**30
    finally:
        victim.kill()
        victim.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"
    )
    print(f"python: {sys.version.split()[0]} ({sys.executable})")
    objects = census.total_count
    print(f"core: {gib:.2f} GiB, {objects:,} objects; gcore took {gcore_s:.1f} s")
    print()
    print("| what | wall s | CPU s | wall s/GiB | CPU s/GiB |")
    print("|---|---|---|---|---|")
    for what, (wall, cpu) in figures.items():
        print(
            f"| {what} | {wall:.2f} | {cpu:.2f} | {wall / gib:.2f} | {cpu / gib:.2f} |"
        )
    stop = statistics.median(stops)
    print(
        f"| live: target stopped ({live_gib:.2f} GiB copied) | {stop:.2f} | - "
        f"| {stop / live_gib:.2f} | - |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
