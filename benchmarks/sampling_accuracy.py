"""Sampled tracing: what it costs and how accurate its estimates are.

    python3 benchmarks/sampling_accuracy.py [--reps N] [--runs N] [--quick]

Prints a Markdown table (docs/production.md quotes it).  Standard library
only; every measurement is a fresh process (``--child``), so no run sees
another's heap, caches or random state.

(a) Overhead: W1 (200,000 iterations: build
    ``{"id": i, "name": "user%d" % i, "tags": [i, i+1, i+2]}``,
    ``json.dumps`` it, ``json.loads`` that, append it to a list cleared
    every 1,000 items), CPU time of the loop, untraced and with
    ``start(25, sample_bytes=512 KiB)``; configurations interleaved, each
    repeated ``--reps`` times; medians.  Exact tracing (nframe 25) is shown
    for reference.
(b) Accuracy: a site retains 100 MiB in ~1 KiB objects; its estimated size
    at 512 KiB, against the truth (the blocks' sizes), over ``--runs``
    processes: the median error and the worst run.
(c) Small sites and phantoms: a site retaining 50 KiB (0.05% of the heap)
    may be missed (how often it is found is reported); a site that
    allocated nothing must never be reported: every line the sampled
    snapshots name must be one that exact tracing of the same program
    shows holding memory, and a hot loop that allocates nothing never
    appears.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

SAMPLE_BYTES = 512 * 1024
NFRAME = 25
W1_ITERATIONS = 200_000
W1_TARGET = 1.05
BIG_BYTES = 100 * 1024 * 1024
BIG_OBJECT = 1024  # bytes per object, header included
SMALL_BYTES = 50 * 1024
MEDIAN_TARGET = 0.10
WORST_TARGET = 0.25


# --------------------------------------------------------------------------
# The workloads (run in the child)


def w1(n: int) -> None:
    dumps, loads = json.dumps, json.loads
    kept = []
    for i in range(n):
        item = {"id": i, "name": "user%d" % i, "tags": [i, i + 1, i + 2]}
        kept.append(loads(dumps(item)))
        if len(kept) == 1000:
            kept.clear()


def child_w1(config: str) -> Dict[str, Any]:
    import pyleakhunt

    w1(100)  # warm json's code paths
    gc.collect()
    if config == "sampled":
        pyleakhunt.start(NFRAME, sample_bytes=SAMPLE_BYTES)
    elif config == "exact":
        pyleakhunt.start(NFRAME)
    started = time.process_time()
    w1(W1_ITERATIONS)
    elapsed = time.process_time() - started
    if pyleakhunt.is_tracing():
        pyleakhunt.stop()
    return {"seconds": elapsed}


def retain_big(slots: List[Any]) -> None:
    payload = BIG_OBJECT - sys.getsizeof(b"")
    for i in range(len(slots)):
        slots[i] = bytes(payload)  # BIG_LINE: one ~1 KiB block each


def retain_small(slots: List[Any]) -> None:
    payload = BIG_OBJECT - sys.getsizeof(b"")
    for i in range(len(slots)):
        slots[i] = bytes(payload)  # SMALL_LINE


def allocates_nothing(n: int) -> int:
    total = 0
    for i in range(n):
        total += i & 7  # NOTHING_LINE: small ints are cached, no allocation
    return total


def churn(n: int) -> None:
    for i in range(n):
        str(i) * 3


BIG_LINE = retain_big.__code__.co_firstlineno + 3
SMALL_LINE = retain_small.__code__.co_firstlineno + 3
NOTHING_LINE = allocates_nothing.__code__.co_firstlineno + 3


def child_accuracy(config: str) -> Dict[str, Any]:
    import pyleakhunt

    big = [None] * (BIG_BYTES // BIG_OBJECT)
    small = [None] * (SMALL_BYTES // BIG_OBJECT)
    gc.collect()
    if config == "sampled":
        pyleakhunt.start(NFRAME, sample_bytes=SAMPLE_BYTES)
    else:
        pyleakhunt.start(NFRAME)
    churn(50_000)
    allocates_nothing(200_000)
    retain_big(big)
    retain_small(small)
    snapshot = pyleakhunt.take_snapshot(traces=False)
    pyleakhunt.stop()
    lines: Dict[int, List[int]] = {}
    for site in snapshot.sites:
        filename, lineno = site.frames[0]
        if filename == __file__:
            figures = lines.setdefault(lineno, [0, 0])
            figures[0] += site.size
            figures[1] += site.count
    return {
        "big_true": sum(sys.getsizeof(b) for b in big),
        "small_true": sum(sys.getsizeof(b) for b in small),
        "objects": len(big),
        "heap_estimate": sum(site.size for site in snapshot.sites),
        "lines": {str(k): v for k, v in lines.items()},
    }


CHILDREN = {"w1": child_w1, "accuracy": child_accuracy}


# --------------------------------------------------------------------------
# The parent


def measure(kind: str, config: str) -> Dict[str, Any]:
    output = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", kind, config],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYLEAKHUNT"},
    ).stdout
    return json.loads(output.splitlines()[-1])


def percent(x: float) -> str:
    return "%+.1f%%" % (100 * x)


def verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=11, help="W1 repetitions (11)")
    parser.add_argument("--runs", type=int, default=20, help="accuracy runs (20)")
    parser.add_argument("--quick", action="store_true", help="3 reps, 5 runs")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, config = args.child
        print(json.dumps(CHILDREN[kind](config)))
        return 0
    if args.quick:
        args.reps, args.runs = 3, 5

    configs = ("untraced", "sampled", "exact")
    times: Dict[str, List[float]] = {c: [] for c in configs}
    for _ in range(args.reps):
        for config in configs:  # interleaved: drift hits every config alike
            times[config].append(measure("w1", config)["seconds"])
    median = {c: statistics.median(times[c]) for c in configs}
    sampled_ratio = median["sampled"] / median["untraced"]
    exact_ratio = median["exact"] / median["untraced"]

    exact = measure("accuracy", "exact")
    allocating = {int(k) for k in exact["lines"]}
    errors, count_errors, small_found, phantoms = [], [], 0, set()
    for _ in range(args.runs):
        run = measure("accuracy", "sampled")
        lines = {int(k): v for k, v in run["lines"].items()}
        size, count = lines.get(BIG_LINE, [0, 0])
        errors.append(size / run["big_true"] - 1)
        count_errors.append(count / run["objects"] - 1)
        small_found += SMALL_LINE in lines
        phantoms |= set(lines) - allocating
        phantoms |= {NOTHING_LINE} & set(lines)
    median_error = statistics.median(errors)
    worst = max(errors, key=abs)
    small_share = exact["small_true"] / exact["heap_estimate"]

    print("## Sampled tracing: overhead and accuracy")
    print()
    print(
        "Python %s on %s; `start(%d, sample_bytes=%d KiB)`; %d W1 repetitions, "
        "%d accuracy runs, each a fresh process."
        % (
            platform.python_version(),
            cpu_model(),
            NFRAME,
            SAMPLE_BYTES // 1024,
            args.reps,
            args.runs,
        )
    )
    print()
    print("| Figure | Target | Measured | |")
    print("|---|---|---|---|")
    print(
        "| W1 CPU time, sampled 512 KiB vs untraced (medians: %.3f s vs %.3f s) "
        "| at most %.2fx | %.3fx | %s |"
        % (
            median["sampled"],
            median["untraced"],
            W1_TARGET,
            sampled_ratio,
            verdict(sampled_ratio <= W1_TARGET),
        )
    )
    print(
        "| W1 CPU time, exact tracing vs untraced (reference, %.3f s) | - "
        "| %.2fx | |" % (median["exact"], exact_ratio)
    )
    print(
        "| 100 MiB site in 1 KiB objects: median error of %d runs | within "
        "+-%d%% | %s | %s |"
        % (
            args.runs,
            100 * MEDIAN_TARGET,
            percent(median_error),
            verdict(abs(median_error) <= MEDIAN_TARGET),
        )
    )
    print(
        "| 100 MiB site: worst run | within +-%d%% | %s | %s |"
        % (100 * WORST_TARGET, percent(worst), verdict(abs(worst) <= WORST_TARGET))
    )
    print(
        "| 100 MiB site: block count, median error / worst run | - | %s / %s | |"
        % (
            percent(statistics.median(count_errors)),
            percent(max(count_errors, key=abs)),
        )
    )
    print(
        "| 50 KiB site (%.2f%% of the heap): runs that report it | may be missed "
        "| %d of %d | |" % (100 * small_share, small_found, args.runs)
    )
    print(
        "| sites reported that allocated nothing | none | %d | %s |"
        % (len(phantoms), verdict(not phantoms))
    )
    print()
    print(
        "W1 seconds, untraced: %s; sampled: %s."
        % (
            ", ".join("%.3f" % t for t in times["untraced"]),
            ", ".join("%.3f" % t for t in times["sampled"]),
        )
    )
    print(
        "Errors of the 100 MiB estimate: %s."
        % ", ".join(percent(e) for e in sorted(errors))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
