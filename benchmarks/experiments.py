"""The measurement sets: which workload, under which tracer configurations,
with which parameters, how many times.

The parent runs every set interleaved (``for rep in reps: for config in
configs: run``), each run in a fresh child process.  Figures
(`benchmarks.figures`) read the results of one or more sets.

To add a measurement: add an `Experiment` to `EXPERIMENTS` (and a figure that
reads it).  To put a new tracer in a figure, add its configurations here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

from .tracers import STANDARD_CONFIGS

#: The nframe values of the nframe sweep (figure 4).
NFRAME_SWEEP = [1, 5, 25, 100]

SWEEP_CONFIGS = (
    ["none"]
    + ["tracemalloc-%d" % n for n in NFRAME_SWEEP]
    + ["pyleakhunt-%d" % n for n in NFRAME_SWEEP]
)


@dataclass(frozen=True)
class Experiment:
    key: str
    workload: str
    configs: List[str]
    params: Dict[str, Any]
    reps: int
    quick_params: Dict[str, Any] = field(default_factory=dict)
    quick_reps: int = 3
    #: Seconds before a single run is killed.
    timeout: float = 900.0
    #: The result field that progress lines show.
    headline: str = "loop_cpu_seconds"

    def settings(self, quick: bool) -> Tuple[Dict[str, Any], int]:
        """``(params, reps)`` for the mode; quick_params override params."""
        if quick:
            return {**self.params, **self.quick_params}, self.quick_reps
        return dict(self.params), self.reps


EXPERIMENTS: Dict[str, Experiment] = {}


def add(experiment: Experiment) -> Experiment:
    EXPERIMENTS[experiment.key] = experiment
    return experiment


add(
    Experiment(
        key="w1",
        workload="w1",
        configs=list(STANDARD_CONFIGS),
        params={"n": 200_000, "depth": 0},
        reps=7,
        quick_params={"n": 20_000},
    )
)

add(
    Experiment(
        key="heap",
        workload="heap",
        configs=["none", "tracemalloc-1", "pyleakhunt-1"],
        params={"n": 1_000_000, "depth": 0, "snapshots": True},
        reps=3,
        quick_params={"n": 100_000},
        headline="rss_growth",
    )
)

add(
    Experiment(
        key="sites",
        workload="sites",
        configs=["tracemalloc-10", "pyleakhunt-10"],
        params={"sites": 100_000, "frames": 10, "per_function": 10},
        reps=5,
        quick_params={"sites": 25_000},
        headline="build_cpu_seconds",
    )
)

add(
    Experiment(
        key="w1-nframe",
        workload="w1",
        configs=SWEEP_CONFIGS,
        params={"n": 50_000, "depth": 30},
        reps=3,
        quick_params={"n": 5_000},
    )
)

add(
    Experiment(
        key="heap-nframe",
        workload="heap",
        configs=SWEEP_CONFIGS,
        params={"n": 100_000, "depth": 30, "snapshots": False},
        reps=3,
        quick_params={"n": 20_000},
        headline="rss_growth",
    )
)
