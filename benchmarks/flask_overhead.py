"""Throughput of a Flask hello-world with and without pyleakhunt's extension.

Standalone::

    python3 -m pip install flask waitress && apt-get install -y wrk
    python3 setup.py build_ext --inplace
    python3 benchmarks/flask_overhead.py [--reps 7] [--duration 5]

Each measurement starts a fresh server process (waitress, 4 threads, on
127.0.0.1) serving the app either bare (``off``) or with
``pyleakhunt.flask.LeakHunt(app, report_token=..., nframe=1)`` (``on``:
every allocation traced with one frame, requests tagged and counted, a
sample every 2 s; the report page served through the app with a token,
whose prefix test every request pays, where ``report=True`` alone serves
it on a port of its own and requests pay nothing for it), warms it up
for a second, then loads it with ``wrk`` for *duration* seconds.
Configurations are interleaved, their order alternating between
repetitions, and the table gives medians.  With two
CPUs or more, the server is pinned to one CPU and wrk to another, so that
they do not compete (waitress serves Python code under the GIL: one CPU is
what it uses).  Besides wrk's requests per second, the table gives the
server's CPU time per request (from /proc), which other processes on the
machine disturb much less.  Prints a Markdown table on stdout; progress on
stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from typing import Dict, List, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The report page's token: the driver reads the page through the app.
REPORT_TOKEN = "flask-overhead-benchmark-token"
CONFIGS = ("off", "on")
#: Extra configurations, to see where the cost goes: ``trace`` only starts
#: the tracer as the extension does (one frame, stack depth not counted; no
#: tags, no extension); ``tagvar`` also registers
#: the tag variable, which the hooks then read on every allocation;
#: ``sampled`` is the extension with sampled tracing (figures estimated);
#: ``untraced`` is the extension with tracing stopped: its Python code alone.
DIAGNOSTIC_CONFIGS = ("trace", "tagvar", "sampled", "untraced")
LABELS = {
    "off": "off (bare Flask)",
    "on": "on (`LeakHunt(app, report_token=..., nframe=1)`)",
    "trace": "tracer only (`start(1, total_nframe=False, fresh_objects=False)`)",
    "tagvar": "tracer reading the tag variable, no extension",
    "sampled": 'on, sampled (`sample_bytes="16KiB"`)',
    "untraced": "the extension's Python code alone (tracing stopped)",
}


# --------------------------------------------------------------------------
# The server (a child process)


def serve(config: str, port: int, threads: int) -> None:
    """Serve the hello-world app until killed."""
    sys.path.insert(0, REPO)
    import waitress
    from flask import Flask

    app = Flask("hello")

    @app.route("/")
    def hello() -> str:
        return "Hello, World!"

    if config in ("on", "sampled", "untraced"):
        from pyleakhunt.flask import LeakHunt

        sample_bytes = "16KiB" if config == "sampled" else None
        LeakHunt(app, report_token=REPORT_TOKEN, nframe=1, sample_bytes=sample_bytes)
        if config == "untraced":
            import pyleakhunt

            pyleakhunt.stop()
    elif config in DIAGNOSTIC_CONFIGS:
        import pyleakhunt

        if config == "tagvar":
            from pyleakhunt import _core
            from pyleakhunt.attribution import TAG_VAR

            _core.set_tag_var(TAG_VAR)
        # As the extension starts it (its lease leaves the free lists alone).
        pyleakhunt.start(1, total_nframe=False, fresh_objects=False)
    # 16 connections on 4 threads queue up: that is the point, not news.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    waitress.serve(app, host="127.0.0.1", port=port, threads=threads, _quiet=True)


# --------------------------------------------------------------------------
# The driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pinned(cpu: Optional[int], argv: List[str]) -> List[str]:
    if cpu is None or shutil.which("taskset") is None:
        return argv
    return ["taskset", "-c", str(cpu), *argv]


def _wait_ready(url: str, timeout: float = 20.0) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with opener.open(url, timeout=1) as response:
                response.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start: " + url) from None
            time.sleep(0.05)


def _wrk(
    url: str, seconds: float, connections: int, cpu: Optional[int]
) -> Tuple[float, int]:
    """Load *url*; return wrk's requests per second and requests served."""
    argv = _pinned(
        cpu,
        ["wrk", "-t1", "-c%d" % connections, "-d%ds" % max(1, round(seconds)), url],
    )
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    rate = re.search(r"Requests/sec:\s*([0-9.]+)", out)
    served = re.search(r"([0-9]+) requests in", out)
    if rate is None or served is None:
        raise RuntimeError("cannot read wrk's output:\n" + out)
    if "Non-2xx" in out or "Socket errors" in out:
        print("warning: wrk reports errors:\n" + out, file=sys.stderr)
    return float(rate.group(1)), int(served.group(1))


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process *pid* so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    config: str, args: argparse.Namespace, cpus: List[Optional[int]]
) -> Tuple[float, Optional[float]]:
    """One fresh server, warmed up, then loaded: requests per second, and
    the server's CPU time per request in microseconds (None off Linux)."""
    port = _free_port()
    url = "http://127.0.0.1:%d/" % port
    server = subprocess.Popen(
        _pinned(
            cpus[0],
            [
                sys.executable,
                os.path.abspath(__file__),
                "--serve",
                config,
                "--port",
                str(port),
                "--threads",
                str(args.threads),
            ],
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(url)
        _wrk(url, 1, args.connections, cpus[1])  # warm-up
        try:
            cpu_before = _cpu_seconds(server.pid)
        except OSError:
            cpu_before = None
        rate, served = _wrk(url, args.duration, args.connections, cpus[1])
        cpu_us = None
        if cpu_before is not None:
            cpu_us = (_cpu_seconds(server.pid) - cpu_before) / served * 1e6
        if config in ("on", "sampled"):
            _check_attribution(url)
        return rate, cpu_us
    finally:
        server.terminate()
        server.wait(10)


def _check_attribution(url: str) -> None:
    """Make sure the 'on' server really counted the requests."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    page = urllib.request.Request(
        url + "_leakhunt/api", headers={"X-LeakHunt-Token": REPORT_TOKEN}
    )
    with opener.open(page, timeout=10) as response:
        doc = json.load(response)
    served = sum(e["requests"] for e in doc["endpoints"])
    if served < 1000 or not doc["tracing"]:
        raise RuntimeError("the 'on' server did not attribute requests: %r" % doc)


def _machine() -> Dict[str, str]:
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for name in ("flask", "waitress"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = "?"
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return {
        "cpu": "%s, %d CPUs" % (model, os.cpu_count() or 0),
        "os": platform.platform(),
        "python": "%s %s"
        % (platform.python_implementation(), platform.python_version()),
        "flask": versions["flask"],
        "waitress": versions["waitress"],
        "wrk": (wrk.stdout or wrk.stderr).split("[")[0].strip() or "wrk",
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="repetitions (7)")
    parser.add_argument(
        "--duration", type=float, default=5, help="seconds of load per run (5)"
    )
    parser.add_argument("--threads", type=int, default=4, help="waitress threads (4)")
    parser.add_argument(
        "--connections", type=int, default=16, help="wrk connections (16)"
    )
    parser.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help="configurations to compare (off,on; diagnostics: %s)"
        % ",".join(DIAGNOSTIC_CONFIGS),
    )
    parser.add_argument(
        "--serve", choices=CONFIGS + DIAGNOSTIC_CONFIGS, help=argparse.SUPPRESS
    )
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port, args.threads)
        return 0
    if shutil.which("wrk") is None:
        parser.error("wrk is needed: apt-get install -y wrk")
    cpus: List[Optional[int]] = [None, None]
    if (os.cpu_count() or 1) >= 2:
        cpus = [0, 1]
    configs = tuple(args.configs.split(","))
    unknown = set(configs) - set(CONFIGS + DIAGNOSTIC_CONFIGS)
    if unknown or "off" not in configs:
        parser.error(
            "--configs: 'off' and some of on,%s" % ",".join(DIAGNOSTIC_CONFIGS)
        )
    rates: Dict[str, List[float]] = {config: [] for config in configs}
    cpu: Dict[str, List[float]] = {config: [] for config in configs}
    for rep in range(args.reps):
        order = configs if rep % 2 == 0 else tuple(reversed(configs))
        for config in order:
            rate, cpu_us = measure(config, args, cpus)
            rates[config].append(rate)
            if cpu_us is not None:
                cpu[config].append(cpu_us)
            print(
                "rep %d/%d %-6s %8.0f req/s %8s"
                % (
                    rep + 1,
                    args.reps,
                    config,
                    rate,
                    "" if cpu_us is None else "%.0f us CPU/request" % cpu_us,
                ),
                file=sys.stderr,
            )
    medians = {config: statistics.median(runs) for config, runs in rates.items()}
    cpu_medians = {c: statistics.median(v) for c, v in cpu.items() if v}
    off = medians["off"]
    machine = _machine()
    lines = [
        "| configuration | median req/s | on/off | server CPU per request "
        "| CPU ratio | runs (req/s) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for config in configs:
        cpu_cells = "| - | -"
        if config in cpu_medians and "off" in cpu_medians:
            cpu_cells = "| %.0f us | %.3f" % (
                cpu_medians[config],
                cpu_medians[config] / cpu_medians["off"],
            )
        lines.append(
            "| %s | %.0f | %.3f %s | %s |"
            % (
                LABELS[config],
                medians[config],
                medians[config] / off,
                cpu_cells,
                ", ".join("%.0f" % r for r in rates[config]),
            )
        )
    lines.append("")
    if "on" in medians:
        lines += [
            "Throughput drop with the extension: **%.1f%%** (target: at most 15%%)."
            % (100 * (1 - medians["on"] / off)),
            "",
        ]
    lines += [
        "Flask hello world under waitress (%d threads) on 127.0.0.1, loaded by "
        "wrk (1 thread, %d connections, %g s per run after a 1 s warm-up), %d "
        "interleaved repetitions%s."
        % (
            args.threads,
            args.connections,
            args.duration,
            args.reps,
            "; server and wrk pinned to separate CPUs" if cpus[0] is not None else "",
        ),
        "Machine: %s; %s; %s; Flask %s, waitress %s; %s."
        % (
            machine["cpu"],
            machine["os"],
            machine["python"],
            machine["flask"],
            machine["waitress"],
            machine["wrk"],
        ),
    ]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
