"""W1: JSON churn, the tracer's speed figure.

Each iteration builds a small dict, ``json.dumps`` it, ``json.loads`` the
text and keeps the result in a list that is cleared every 1,000 items: many
short-lived allocations, a few hundred live ones.  Only the loop is timed;
the tracer starts before the timer and stops after it.
"""

from __future__ import annotations

import json
from typing import Any, Dict

from . import register
from .common import call_at_depth, last_stack_depth, max_rss_bytes, settle, timed

KEEP = 1000


def w1(n: int) -> None:
    dumps, loads = json.dumps, json.loads
    kept = []
    for i in range(n):
        item = {"id": i, "name": "user%d" % i, "tags": [i, i + 1, i + 2]}
        kept.append(loads(dumps(item)))
        if len(kept) == KEEP:
            kept.clear()


@register("w1")
def run(tracer: Any, params: Dict[str, Any]) -> Dict[str, Any]:
    """params: n (iterations, 200,000), depth (extra stack frames, 0)."""
    n = int(params.get("n", 200_000))
    depth = int(params.get("depth", 0))
    w1(100)  # warm json's code paths before anything is measured
    settle()
    result: Dict[str, Any] = {}
    tracer.start()
    timed(result, "loop", call_at_depth, depth, w1, n)
    result["stack_depth"] = last_stack_depth()
    result.update(tracer.accounting())
    tracer.stop()
    result["maxrss_end"] = max_rss_bytes()
    return result
