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
from typing import Any, Dict, List, Optional, Tuple

from .tracers import FIELD_CONFIGS, STANDARD_CONFIGS

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
    #: An optional package the workload needs; without it the parent skips
    #: the experiment with a note ("not installed").
    requires: Optional[str] = None
    #: False: skipped in quick mode (too slow for the smoke test).
    in_quick: bool = True

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
        reps=5,
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
        reps=3,
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


# -- Figure 5: against the field ---------------------------------------------

#: pyperformance benchmarks (see `benchmarks.workloads.pyperformance_bm`)
#: and the calls of their work unit per run: full mode, quick mode (0: not
#: in quick mode: raytrace's smallest unit takes a minute under
#: tracemalloc-25 on a loaded machine).  Each
#: full run is about 0.1 s of untraced CPU time on the reference machine.
PYPERFORMANCE = {
    "json_loads": (250, 30),
    "json_dumps": (10, 1),
    "richards": (4, 1),
    "deltablue": (40, 5),
    "go": (1, 1),
    "chaos": (2, 1),
    "raytrace": (1, 0),
    "unpack_sequence": (10, 1),
}

#: The workloads of figure 5, in report order: experiment keys.
FIELD_WORKLOADS = ["field-w1", "field-w2", "field-w3"] + [
    "pp-" + name for name in PYPERFORMANCE
]
FIELD_REPS, FIELD_QUICK_REPS = 5, 1

add(
    Experiment(
        key="field-w1",
        workload="w1",
        configs=list(FIELD_CONFIGS),
        params={"n": 40_000, "depth": 0},
        reps=FIELD_REPS,
        quick_params={"n": 5_000},
        quick_reps=FIELD_QUICK_REPS,
    )
)
add(
    Experiment(
        key="field-w2",
        workload="w2",
        configs=list(FIELD_CONFIGS),
        params={"n": 30_000},
        reps=FIELD_REPS,
        quick_params={"n": 4_000},
        quick_reps=FIELD_QUICK_REPS,
    )
)
add(
    Experiment(
        key="field-w3",
        workload="w3",
        configs=list(FIELD_CONFIGS),
        params={"n": 200},
        reps=FIELD_REPS,
        quick_params={"n": 40},
        quick_reps=FIELD_QUICK_REPS,
        requires="flask",
    )
)
for _name, (_loops, _quick_loops) in PYPERFORMANCE.items():
    add(
        Experiment(
            key="pp-" + _name,
            workload="pyperformance",
            configs=list(FIELD_CONFIGS),
            params={"bench": _name, "loops": _loops},
            reps=FIELD_REPS,
            quick_params={"loops": _quick_loops},
            quick_reps=FIELD_QUICK_REPS,
            requires="pyperformance",
            in_quick=_quick_loops > 0,
        )
    )

# -- Figure 6: scaling with the number of live blocks -------------------------

#: Live blocks of the scaling figure -> heap items (6 blocks per item); the
#: largest point is the "heap" experiment (1,000,000 items) itself.
SCALE_BLOCKS = {10_000: 1_667, 100_000: 16_667, 1_000_000: 166_667}
SCALE_QUICK = {10_000: 1_667, 100_000: 16_667, 1_000_000: 50_000}
SCALE_CONFIGS = ["none", "tracemalloc-1", "pyleakhunt-1"]
SCALE_EXPERIMENTS = ["heap-%d" % blocks for blocks in SCALE_BLOCKS]

for _blocks, _items in SCALE_BLOCKS.items():
    add(
        Experiment(
            key="heap-%d" % _blocks,
            workload="heap",
            configs=list(SCALE_CONFIGS),
            params={"n": _items, "depth": 0, "snapshots": True},
            reps=3,
            quick_params={"n": SCALE_QUICK[_blocks]},
            quick_reps=2,
            headline="rss_growth",
        )
    )
