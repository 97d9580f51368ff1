"""The service's code, as it was in production.

``/app_metric/<app>`` asks a slow metrics store for an app's figures,
through `DownstreamPool`, a thread-pool wrapper with a timeout that times
every call with a `Profiler`.  The Profiler keeps every timing in a
class-level list "for a report", and nothing ever clears it: the process
grows by one string and one list slot per request, until the OOM killer
steps in.

Set ``LEAK_FIXED=1`` to run the fix: the Profiler keeps running totals and
the last 1000 timings, whatever the traffic.
"""

import collections
import functools
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

FIXED = os.environ.get("LEAK_FIXED") == "1"


class Profiler:
    """Times a call; keeps every timing for a report that never comes."""

    timings = []  # class-level: shared by every Profiler, never cleared

    def __init__(self, call, args):
        self.call = call
        self.args = args

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc_info):
        elapsed = time.perf_counter() - self.start
        Profiler.timings.append(f"{self.call}{self.args} took {elapsed:.6f} s")


class BoundedProfiler(Profiler):
    """The fix: totals per call, and only the most recent timings."""

    recent = collections.deque(maxlen=1000)
    totals = collections.Counter()

    def __exit__(self, *exc_info):
        elapsed = time.perf_counter() - self.start
        BoundedProfiler.totals[self.call] += elapsed
        BoundedProfiler.recent.append(elapsed)


class DownstreamPool:
    """Calls a slow downstream service on a thread pool, with a timeout."""

    def __init__(self, workers=8):
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="downstream")
        self._profiler = BoundedProfiler if FIXED else Profiler

    def call(self, func, *args, timeout=2.0):
        with self._profiler(func.__name__, args):
            return self._pool.submit(func, *args).result(timeout)


def fetch_metric(app):
    """The slow downstream: a metrics store."""
    time.sleep(0.001)
    return {"app": app, "p99_ms": 12.5 + len(app)}


@functools.lru_cache(maxsize=128)
def exchange_rate(currency):
    """Healthy: rendered rates, in a cache bounded at 128 entries."""
    rate = 1.0 + sum(map(ord, currency)) / 1000
    return json.dumps({"currency": currency, "rate": rate, "source": "ECB " * 20})


def render_report(user):
    """Healthy: builds a page and drops it."""
    rows = ["<tr><td>%d</td><td>%s</td></tr>" % (i, "x" * 20) for i in range(40)]
    return "<table>%s</table><!-- user %d -->" % ("".join(rows), user)
