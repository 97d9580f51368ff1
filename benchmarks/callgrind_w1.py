"""W1 in instructions: callgrind counts, which a shared machine's noise
does not move.

    python -m benchmarks.callgrind_w1 [--configs none,pyleakhunt-1,...]
                                      [--small 2000] [--large 6000]
                                      [--depth 0] [--layouts 1]

For each configuration, the timed W1 figure's child process
(`benchmarks/runner.py` running `benchmarks.workloads.w1`) runs under
``valgrind --tool=callgrind`` twice, for *small* and for *large* iterations,
in a fresh process each; instructions per iteration = the difference of the
two totals / the difference of the iterations, so that start-up, imports
and the tracer's start and stop cancel.  Prints one Markdown table row per
configuration, with the ratio to the untraced loop.  *depth* runs the
loop that many extra Python frames deep, as figure 4 does.  Needs valgrind.

The counts are exact for one process, but they depend a little on where
its memory lies: the tracer's tables are indexed by addresses, so which
blocks and call sites share a slot changes with the layout.  A change of
the checkout's directory name alone moved pyleakhunt-1 by 500
instructions an iteration (0.9%) on 3.14.  *layouts* repeats each pair
of runs with the heap shifted (a block of LAYOUT_STEP bytes more each
time, allocated before anything is imported) and gives the mean, with
the range.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULT_CONFIGS = "none,pyleakhunt-1,pyleakhunt-25,tracemalloc-1"

# Each layout's block is mapped on its own (over glibc's 128 KiB mmap
# threshold), so the memory mapped after it moves by this much.
LAYOUT_STEP = 200_000

# The child: the timed W1 figure's own child (benchmarks/runner.py, which
# runs `benchmarks.workloads.w1.run`), so that both measure the same work.
# Its collection before tracing starts matters: a full collection empties
# CPython's free lists, so every object the loop later takes from one was
# recorded while tracing, and is moved to the line that reuses it (on 3.14,
# 22 an iteration instead of 10).
CHILD = """
import json, sys
_layout = bytearray(int(sys.argv[4]))
from benchmarks import runner
params = {"n": int(sys.argv[2]), "depth": int(sys.argv[3])}
sys.exit(runner.main(["w1", sys.argv[1], json.dumps(params)]))
"""


def instructions(config: str, iterations: int, depth: int = 0, layout: int = 0) -> int:
    """Total instructions (callgrind's Ir) of one child process, its heap
    shifted by *layout* steps."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        # A fixed hash seed: the same dict and set layouts in both runs.
        # No bytecode caches written: otherwise the first run of a pair
        # compiles and writes the .pyc files the second one only reads,
        # and that one-off cost (some 100 million instructions in a fresh
        # tree) lands in one run of the pair.
        env = dict(
            os.environ,
            PYTHONPATH=REPO,
            PYTHONHASHSEED="0",
            PYTHONDONTWRITEBYTECODE="1",
        )
        command = [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=" + out,
            sys.executable,
            "-c",
            CHILD,
            config,
            str(iterations),
            str(depth),
            str(layout * LAYOUT_STEP),
        ]
        proc = subprocess.run(command, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError("%s failed:\n%s" % (" ".join(command), proc.stderr))
        with open(out) as f:
            for line in f:
                match = re.match(r"(?:summary|totals):\s+(\d+)", line)
                if match:
                    return int(match.group(1))
    raise RuntimeError("no instruction total in callgrind's output")


def grouped(count: float) -> str:
    return format(round(count), ",")


def per_iteration(config: str, args: argparse.Namespace, layout: int) -> float:
    """Instructions an iteration of one configuration in one layout."""
    small = instructions(config, args.small, args.depth, layout)
    large = instructions(config, args.large, args.depth, layout)
    return (large - small) / (args.large - args.small)


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=DEFAULT_CONFIGS)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=6000)
    parser.add_argument("--depth", type=int, default=0)
    parser.add_argument("--layouts", type=int, default=1)
    args = parser.parse_args(argv)
    if args.layouts < 1 or args.large <= args.small:
        parser.error("--layouts must be at least 1, and --large above --small")
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    counts: Dict[str, List[float]] = {
        config: [per_iteration(config, args, k) for k in range(args.layouts)]
        for config in configs
    }
    means = {config: statistics.fmean(xs) for config, xs in counts.items()}
    base = means.get("none")
    print(
        "Python %s, %d extra frames deep, mean of %d layouts"
        % (sys.version.split()[0], args.depth, args.layouts)
    )
    print("| Configuration | Instructions an iteration | range | vs untraced |")
    print("|:---|---:|---:|---:|")
    for config, xs in counts.items():
        ratio = "%.3fx" % (means[config] / base) if base else "-"
        spread = "%s - %s" % (grouped(min(xs)), grouped(max(xs)))
        print("| %s | %s | %s | %s |" % (config, grouped(means[config]), spread, ratio))
    return 0


if __name__ == "__main__":
    sys.exit(main())
