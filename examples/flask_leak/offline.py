"""The service's code without a web server, for ``pyleakhunt run``.

    python3 offline.py [--seconds 10] [--trace]

Calls the three endpoints' code in a loop and prints, every second, the
calls made so far, the process's RSS and, when pyleakhunt traces (under
``pyleakhunt run``, or with ``--trace``), the traced memory.
"""

import argparse
import os
import time

from service import DownstreamPool, exchange_rate, fetch_metric, render_report

import pyleakhunt

APPS = ("frontend", "billing", "search", "checkout", "auth", "catalog", "ads")
CURRENCIES = [a + b + "X" for a in "ABCDEFGHIJKLMNOP" for b in "QRSTUVWXYZ"]


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--trace", action="store_true", help="start pyleakhunt")
    args = parser.parse_args()
    if args.trace:
        pyleakhunt.start(10)
    pool = DownstreamPool()
    started = time.monotonic()
    next_report = started + 1
    calls = 0
    while time.monotonic() - started < args.seconds:
        pool.call(fetch_metric, APPS[calls % len(APPS)])
        exchange_rate(CURRENCIES[calls % len(CURRENCIES)])
        render_report(calls % 1000)
        calls += 1
        if time.monotonic() >= next_report:
            next_report += 1
            traced = "-"
            if pyleakhunt.is_tracing():
                traced = "%.2f MiB" % (pyleakhunt.get_traced_memory()[0] / 2**20)
            print(
                "%4.0f s %7d calls   RSS %6.2f MiB   traced %s"
                % (time.monotonic() - started, calls, rss_mib(), traced),
                flush=True,
            )


if __name__ == "__main__":
    main()
