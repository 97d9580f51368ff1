"""The workload registry.

A workload is a function ``run(tracer, params) -> dict`` registered with
``@register("name")``.  It runs inside a fresh child process (see
`benchmarks.runner`), starts and stops *tracer* itself (so that it decides
what the timer covers), and returns plain JSON-able measurements.

To add a workload: write ``benchmarks/workloads/<name>.py`` with a registered
function, import it at the bottom of this file, and describe the runs that use
it in `benchmarks.experiments` (and a report section in `benchmarks.figures`).
"""

from __future__ import annotations

from typing import Any, Callable, Dict

Workload = Callable[..., Dict[str, Any]]

#: Workloads by name.
WORKLOADS: Dict[str, Workload] = {}


def register(name: str) -> Callable[[Workload], Workload]:
    def decorate(func: Workload) -> Workload:
        if name in WORKLOADS:
            raise ValueError(f"workload {name!r} registered twice")
        WORKLOADS[name] = func
        return func

    return decorate


def get(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise ValueError(
            f"unknown workload {name!r}; known: {', '.join(sorted(WORKLOADS))}"
        ) from None


# The workload modules register themselves on import.
from . import heap, pyperformance_bm, sites, w1, w2, w3  # noqa: E402, F401
