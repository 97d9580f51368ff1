"""Many call sites: the aggregated snapshot with 100,000 distinct tracebacks.

Before tracing starts, ``exec`` compiles many small functions (10 lines
each by default) whose every line allocates a one-item list; a ``chain`` of
calls puts each allocation ``frames`` Python frames deep, so each line makes
one distinct traceback of exactly ``frames`` frames at nframe = ``frames``.
The lists stay alive.  Then: aggregated snapshot + ``top(10)`` twice (the
first one pays for cold caches), full snapshot + ``statistics('lineno')``,
and the check that both give the same statistics for the generated lines.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

from . import register
from .common import (
    compare_lines,
    lines_of,
    max_rss_bytes,
    settle,
    timed,
)

FILENAME = "<pyleakhunt-bench-sites>"


def generate(sites: int, per_function: int) -> List[Callable[[list], None]]:
    """Functions with *sites* allocating lines in all, and the chain."""
    lines = ["def chain(k, f, out): return f(out) if k <= 1 else chain(k - 1, f, out)"]
    names = []
    for start in range(0, sites, per_function):
        name = "leaf_%d" % len(names)
        names.append(name)
        lines.append("def %s(out):" % name)
        count = min(per_function, sites - start)
        lines.extend("    out.append([%d])" % j for j in range(count))
    namespace: Dict[str, Any] = {}
    exec(compile("\n".join(lines) + "\n", FILENAME, "exec"), namespace)
    chain = namespace["chain"]
    return [chain] + [namespace[name] for name in names]


@register("sites")
def run(tracer: Any, params: Dict[str, Any]) -> Dict[str, Any]:
    """params: sites (100,000), frames (10), per_function (10).

    The tracer's nframe should equal ``frames``.
    """
    sites = int(params.get("sites", 100_000))
    frames = int(params.get("frames", 10))
    per_function = int(params.get("per_function", 10))
    result: Dict[str, Any] = {"sites": sites, "frames": frames}
    chain, *leaves = timed(result, "compile", generate, sites, per_function)
    keep: List[Any] = []
    settle()
    tracer.start()
    timed(result, "build", _build, chain, leaves, frames, keep)
    result.update(tracer.accounting())
    if tracer.traces:
        aggregated_lines = None
        if tracer.has_aggregated:
            for label in ("aggregated", "aggregated_again"):
                snapshot = timed(
                    result, label + "_snapshot", tracer.take_snapshot, traces=False
                )
                timed(result, label + "_top", snapshot.top, 10)
            aggregated_lines = lines_of(snapshot.statistics("lineno"), FILENAME)
            del snapshot
        snapshot = timed(result, "full_snapshot", tracer.take_snapshot)
        stats = timed(result, "full_statistics", snapshot.statistics, "lineno")
        full_lines = lines_of(stats, FILENAME)
        result["site_lines"] = len(full_lines)
        result["traced_blocks_on_site_lines"] = sum(row[2] for row in full_lines)
        if aggregated_lines is not None:
            result["full_vs_aggregated"] = compare_lines(full_lines, aggregated_lines)
        del snapshot, stats
    result["maxrss_end"] = max_rss_bytes()
    tracer.stop()
    return result


def _build(chain: Any, leaves: List[Any], frames: int, keep: List[Any]) -> None:
    for leaf in leaves:
        chain(frames - 1, leaf, keep)
