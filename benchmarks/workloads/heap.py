"""The 6M-live-block heap: tracer memory per block and full-snapshot cost.

In one child process: measure RSS, start the tracer, build
`heap_objects.build(n)` (6 blocks per item), measure RSS and the tracer's
own accounting again; then, if asked, time ``take_snapshot()`` +
``statistics('lineno')`` and, for tracers that have them, aggregated
snapshots + ``top(10)``, and check that both kinds give the same statistics
for the heap's lines.
"""

from __future__ import annotations

from typing import Any, Dict

from . import heap_objects, register
from .common import (
    call_at_depth,
    compare_lines,
    last_stack_depth,
    lines_of,
    max_rss_bytes,
    rss_bytes,
    settle,
    timed,
)


@register("heap")
def run(tracer: Any, params: Dict[str, Any]) -> Dict[str, Any]:
    """params: n (items; blocks = 6n), depth (extra frames), snapshots (bool)."""
    n = int(params.get("n", 1_000_000))
    depth = int(params.get("depth", 0))
    snapshots = bool(params.get("snapshots", True))
    filename = heap_objects.__file__
    settle()
    rss_before = rss_bytes()
    result: Dict[str, Any] = {}
    tracer.start()
    # Empty CPython's free lists under every tracer alike.  An object made
    # in a block that waited there since before start() is traced by no
    # tracer that moves only traced blocks on reuse (tracemalloc; pyleakhunt
    # from 3.13), but by pyleakhunt on 3.10 to 3.12, whose start() empties
    # them: the heap's lines would differ by a few blocks.
    settle()
    keep = timed(result, "build", call_at_depth, depth, heap_objects.build, n)
    rss_after = rss_bytes()
    result.update(
        {
            "items": n,
            "blocks": n * heap_objects.BLOCKS_PER_ITEM,
            "stack_depth": last_stack_depth(),
            "rss_before": rss_before,
            "rss_after": rss_after,
            "rss_growth": rss_after - rss_before,
            "maxrss_after_build": max_rss_bytes(),
        }
    )
    result.update(tracer.accounting())

    if snapshots and tracer.traces:
        snapshot = timed(result, "full_snapshot", tracer.take_snapshot)
        stats = timed(result, "full_statistics", snapshot.statistics, "lineno")
        result["snapshot_traces"] = len(snapshot.traces)
        full_lines = lines_of(stats, filename)
        result["heap_lines"] = full_lines
        del snapshot, stats

        if tracer.has_aggregated:
            for label in ("aggregated", "aggregated_again"):
                snapshot = timed(
                    result, label + "_snapshot", tracer.take_snapshot, traces=False
                )
                timed(result, label + "_top", snapshot.top, 10)
            del snapshot
            result["full_vs_aggregated"] = _full_vs_aggregated(tracer, filename)

    result["maxrss_end"] = max_rss_bytes()
    tracer.stop()
    del keep
    return result


def _full_vs_aggregated(tracer: Any, filename: str) -> str:
    """Whether a full and an aggregated snapshot taken one after the other,
    with no Python code run in between, give the same statistics for the
    heap's lines.  Snapshots taken further apart may differ, and rightly:
    code run in between may reuse an object from a free list, and a reused
    object moves to the line that reuses it.  From 3.14 ints have a free
    list, and the heap's ``range()`` leaves two dead ints on it, still
    counted at their line (as tracemalloc counts them), which the timed
    snapshots' ``top(10)`` reuses."""
    full = tracer.take_snapshot()
    aggregated = tracer.take_snapshot(traces=False)
    return compare_lines(
        lines_of(full.statistics("lineno"), filename),
        lines_of(aggregated.statistics("lineno"), filename),
    )
