"""``pyleakhunt demo``: find the leak from the talk this project comes from.

A small service handles requests.  A profiling wrapper records how long
every call takes in a *class-level* list that nobody ever clears, so the
process grows on every request.  Beside it, healthy code churns memory and
fills a bounded cache that plateaus.  The demo traces the service, takes an
aggregated snapshot before and after a burst of traffic, and names the line
that leaks.
"""

from __future__ import annotations

import functools
import linecache
import os
import time
from typing import Callable, Dict, List, TextIO

import pyleakhunt

from .snapshot import format_size


class Profiler:
    """Times calls; keeps every timing for a report that never comes."""

    results: List[tuple] = []  # class-level: shared, and never cleared

    def __init__(self, func: Callable) -> None:
        self.func = func
        functools.update_wrapper(self, func)

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.func(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - start
            Profiler.results.append((self.func.__name__, args, elapsed))


@Profiler
def app_metric(app: str) -> Dict[str, object]:
    """The endpoint that leaks, through its profiling wrapper."""
    return {"app": app, "p99_ms": len(app) * 1.5}


_rates: Dict[str, float] = {}


def exchange_rate(currency: str) -> float:
    """Healthy: a cache bounded by the number of currencies."""
    if currency not in _rates:
        _rates[currency] = 1.0 + len(_rates) / 100
    return _rates[currency]


def render(user: int) -> str:
    """Healthy: builds a page and drops it."""
    rows = ["<tr><td>%d</td><td>%s</td></tr>" % (i, "x" * 20) for i in range(50)]
    return "<table>%s</table><!-- %d -->" % ("".join(rows), user)


def serve(requests: int) -> None:
    """A burst of traffic over every endpoint."""
    for i in range(requests):
        app_metric("app-%d" % (i % 7))
        exchange_rate(("EUR", "USD", "GBP", "JPY")[i % 4])
        render(i)


def _source(frame: pyleakhunt.Frame) -> str:
    return linecache.getline(frame.filename, frame.lineno).strip()


def run(out: TextIO, requests: int = 20_000) -> int:
    """Trace a burst of traffic and print the line that leaks."""
    was_tracing = pyleakhunt.is_tracing()
    pyleakhunt.start(10)
    try:
        serve(1_000)  # warm up: caches fill, imports settle
        before = pyleakhunt.take_snapshot(traces=False)
        started = time.perf_counter()
        serve(requests)
        elapsed = time.perf_counter() - started
        after = pyleakhunt.take_snapshot(traces=False)
    finally:
        if not was_tracing:
            pyleakhunt.stop()
    own = [
        pyleakhunt.Filter(
            False, os.path.join(os.path.dirname(pyleakhunt.__file__), name)
        )
        for name in ("__init__.py", "snapshot.py", "_raw.py")
    ]
    after = after.filter_traces(own)
    before = before.filter_traces(own)
    growth = [d for d in after.diff(before) if d.size_diff > 0]
    out.write(
        "Served %d requests in %.2f s with pyleakhunt tracing.\n\n"
        % (requests, elapsed)
    )
    if not growth:
        out.write("No call site grew: no leak found.\n")
        return 1
    total = sum(d.size_diff for d in growth)
    significant = [d for d in growth if d.size_diff >= total / 100]
    out.write("Call sites whose live memory grew, most first:\n")
    for diff in significant[:5]:
        frame = diff.traceback[-1]
        out.write(
            "  %10s per request  %s:%d\n      %s\n"
            % (
                format_size(diff.size_diff / requests),
                os.path.basename(frame.filename),
                frame.lineno,
                _source(frame),
            )
        )
    out.write(
        "\nVerdict: leaking %s per request (%s over %d requests).\n"
        "Memory allocated at these lines stays alive after each request;\n"
        "the biggest, with its callers:\n"
        % (format_size(total / requests), format_size(total), requests)
    )
    by_traceback = after.diff(before, key_type="traceback")
    for line in by_traceback[0].traceback.format(limit=4, most_recent_first=True):
        out.write(line + "\n")
    out.write(
        "\nNext, on your own program:\n"
        "  import pyleakhunt\n"
        "  pyleakhunt.start(10)\n"
        "  before = pyleakhunt.take_snapshot(traces=False)\n"
        "  ...  # let it run\n"
        "  after = pyleakhunt.take_snapshot(traces=False)\n"
        "  for diff in after.diff(before)[:10]: print(diff)\n"
    )
    return 0
