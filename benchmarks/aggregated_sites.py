"""The aggregated snapshot of 100,000 tracebacks, in one process, outside
the harness: to compare Python versions run one after the other at the
same machine load.

    python -m benchmarks.aggregated_sites [--sites 100000] [--nogc]
    python -m benchmarks.aggregated_sites --marks   (under callgrind)

It builds the heap exactly as the ``sites`` workload does (same generated
functions, nframe 10), then times, in CPU time as the docs' figures are,
``take_snapshot(traces=False)`` + ``top(10)`` twice: the first in the
process and the repeated one.  Prints one line: the Python version, both
times, the minor page faults of each and the number of cyclic collections
that ran inside each.

With ``--marks`` it calls ``_core.get_tracemalloc_memory()`` around each
measured region instead of timing: run it under ``valgrind
--tool=callgrind --dump-before=core_get_tracemalloc_memory`` and each dump
after the first holds one region (snapshot, top, cleanup), in order: the
first snapshot, then the repeated one with the collector on, off, on, off.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
from time import process_time
from typing import Any, Dict, List

import pyleakhunt
from pyleakhunt import _core

from .workloads.sites import _build, generate

FRAMES = 10


def _timed_round(label: str) -> str:
    collections = sum(s["collections"] for s in gc.get_stats())
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    start = process_time()
    snapshot = pyleakhunt.take_snapshot(traces=False)
    snapshot.top(10)
    cpu = process_time() - start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    collections = sum(s["collections"] for s in gc.get_stats()) - collections
    del snapshot
    return "%s %.1f ms (%d faults, %d collections)" % (
        label,
        cpu * 1e3,
        faults,
        collections,
    )


def _marked_rounds() -> None:
    mark = _core.get_tracemalloc_memory
    for disable in (False, False, True, False, True):
        if disable:
            gc.disable()
        mark()
        snapshot = pyleakhunt.take_snapshot(traces=False)
        mark()
        snapshot.top(10)
        mark()
        gc.enable()
        del snapshot
        mark()


def main(argv: List[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=100_000)
    parser.add_argument("--nogc", action="store_true", help="gc.disable() first")
    parser.add_argument("--marks", action="store_true", help="for callgrind")
    args = parser.parse_args(argv)
    chain, *leaves = generate(args.sites, 10)
    keep: List[Any] = []
    gc.collect()
    pyleakhunt.start(FRAMES)
    _build(chain, leaves, FRAMES, keep)
    if args.nogc:
        gc.disable()
    if args.marks:
        _marked_rounds()
    else:
        rounds: Dict[str, str] = {}
        for label in ("first", "again"):
            rounds[label] = _timed_round(label)
        print(sys.version.split()[0], " | ".join(rounds.values()), flush=True)
    pyleakhunt.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
