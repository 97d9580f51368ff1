"""W2: object churn with a slowly growing retained set.

Each iteration builds a small graph of class instances (``__slots__``-less,
so each has a ``__dict__``), dicts, lists and strings, derives a few strings
and a summary dict from it, and drops it; one iteration in `RETAIN_EVERY`
keeps a small record in a list that is never cleared (the "leak": the
retained set grows slowly, by a few blocks each time).  Only the loop is
timed; the tracer starts before the timer and stops after it.
"""

from __future__ import annotations

from typing import Any, Dict, List

from . import register
from .common import max_rss_bytes, settle, timed

RETAIN_EVERY = 50


class Order:
    def __init__(self, oid: int, customer: str, lines: List[Line]) -> None:
        self.oid = oid
        self.customer = customer
        self.lines = lines
        self.meta = {"source": "web", "priority": oid % 3}

    def total(self) -> int:
        return sum(line.qty * line.price for line in self.lines)


class Line:
    def __init__(self, sku: str, qty: int, price: int) -> None:
        self.sku = sku
        self.qty = qty
        self.price = price


def w2(n: int) -> List[Dict[str, Any]]:
    retained: List[Dict[str, Any]] = []
    for i in range(n):
        lines = [Line("sku-%d-%d" % (i, k), k + 1, 100 + k) for k in range(4)]
        order = Order(i, "customer%d" % (i % 977), lines)
        tags = [line.sku.upper() for line in lines]
        summary = {
            "id": order.oid,
            "who": order.customer.title(),
            "total": order.total(),
            "tags": ",".join(tags),
            "meta": dict(order.meta),
        }
        if i % RETAIN_EVERY == 0:
            retained.append({"id": summary["id"], "tags": summary["tags"]})
    return retained


@register("w2")
def run(tracer: Any, params: Dict[str, Any]) -> Dict[str, Any]:
    """params: n (iterations, 100,000)."""
    n = int(params.get("n", 100_000))
    w2(200)  # warm up before anything is measured
    settle()
    result: Dict[str, Any] = {}
    tracer.start()
    retained = timed(result, "loop", w2, n)
    result["retained"] = len(retained)
    result.update(tracer.accounting())
    tracer.stop()
    result["maxrss_end"] = max_rss_bytes()
    return result
