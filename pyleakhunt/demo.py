"""``pyleakhunt demo``: find the leak this project was born from.

A web service is slowly killed by the OOM killer.  Its ``/app_metric/<app>``
endpoint calls a slow downstream through a thread-pool wrapper, and the
wrapper's `Profiler` appends every call's timing to a *class-level* list
that nothing ever clears.  Beside it are healthy endpoints: one fills a
bounded cache (it grows, then stops), one builds a page and drops it.

The demo serves that app on loopback with pyleakhunt's Flask extension (or,
without Flask, the same app in plain WSGI with the WSGI middleware), drives
traffic at it from client threads, reads the report at ``/_leakhunt/api``,
and prints the three answers: is it a leak, which endpoint, which line.
The same code, as a standalone example, is in ``examples/flask_leak/``.
"""

from __future__ import annotations

import functools
import json
import linecache
import re
import socketserver
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    Optional,
    TextIO,
    Tuple,
)
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pyleakhunt

from . import attribution
from .report import location, source_line
from .snapshot import Traceback
from .units import format_size
from .userframe import user_frame, via_text

# --------------------------------------------------------------------------
# The service


class Profiler:
    """Times a call; keeps every timing for a report that never comes."""

    timings: List[str] = []  # class-level: shared, never cleared

    def __init__(self, call: str, args: Tuple[Any, ...]) -> None:
        self.call = call
        self.args = args

    def __enter__(self) -> Profiler:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc_info: object) -> None:
        elapsed = time.perf_counter() - self.start
        Profiler.timings.append(f"{self.call}{self.args} took {elapsed:.6f} s")


class DownstreamPool:
    """Calls a slow downstream service on a thread pool, with a timeout."""

    def __init__(self, workers: int = 8) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="downstream")

    def call(self, func: Callable[..., Any], *args: Any, timeout: float = 2.0) -> Any:
        with Profiler(func.__name__, args):
            return self._pool.submit(func, *args).result(timeout)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False)


def fetch_metric(app: str) -> Dict[str, Any]:
    """The slow downstream: a metrics store."""
    time.sleep(0.001)
    return {"app": app, "p99_ms": 12.5 + len(app)}


@functools.lru_cache(maxsize=128)
def exchange_rate(currency: str) -> str:
    """Healthy: a cache of rendered rates, bounded at 128 entries."""
    rate = 1.0 + sum(map(ord, currency)) / 1000
    return json.dumps({"currency": currency, "rate": rate, "source": "ECB " * 20})


def render_report(user: int) -> str:
    """Healthy: builds a page and drops it."""
    rows = ["<tr><td>%d</td><td>%s</td></tr>" % (i, "x" * 20) for i in range(40)]
    return "<table>%s</table><!-- user %d -->" % ("".join(rows), user)


# --------------------------------------------------------------------------
# The app, with Flask or in plain WSGI

ROUTES = [
    ("/app_metric/<app>", re.compile(r"/app_metric/([^/]+)\Z")),
    ("/exchange_rate/<currency>", re.compile(r"/exchange_rate/([^/]+)\Z")),
    ("/report/<int:user>", re.compile(r"/report/([0-9]+)\Z")),
    ("/healthz", re.compile(r"/healthz\Z")),
]


def _route(path: str) -> Tuple[str, Optional[re.Match[str]]]:
    """The route template that *path* matches, and the match (None: 404)."""
    for template, pattern in ROUTES:
        match = pattern.match(path)
        if match:
            return template, match
    return "", None


def flask_app(pool: DownstreamPool, **options: Any) -> Any:
    """The service as a Flask app, with the LeakHunt extension."""
    from flask import Flask, jsonify

    from .flask import LeakHunt

    app = Flask("leaky_service")

    @app.route("/app_metric/<app>")
    def app_metric(app: str) -> Any:
        return jsonify(pool.call(fetch_metric, app))

    @app.route("/exchange_rate/<currency>")
    def rate(currency: str) -> Any:
        return exchange_rate(currency)

    @app.route("/report/<int:user>")
    def report(user: int) -> Any:
        return render_report(user)

    @app.route("/healthz")
    def healthz() -> Any:
        return "ok"

    LeakHunt(app, **options)
    return app


def wsgi_app(pool: DownstreamPool, **options: Any) -> Any:
    """The same service in plain WSGI, with the WSGI middleware."""
    from .wsgi import LeakHuntMiddleware

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        template, match = _route(environ.get("PATH_INFO", ""))
        if match is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        if template.startswith("/app_metric"):
            body = json.dumps(pool.call(fetch_metric, match.group(1)))
        elif template.startswith("/exchange_rate"):
            body = exchange_rate(match.group(1))
        elif template.startswith("/report"):
            body = render_report(int(match.group(1)))
        else:
            body = "ok"
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return [body.encode()]

    def endpoint(environ: Dict[str, Any]) -> str:
        """Name endpoints by route, as Flask does, not by raw path."""
        template, match = _route(environ.get("PATH_INFO", ""))
        if match is None:
            return "<unmatched>"
        return "%s %s" % (environ.get("REQUEST_METHOD", "GET"), template)

    return LeakHuntMiddleware(app, key=endpoint, **options)


# --------------------------------------------------------------------------
# Serving and driving traffic


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    # socketserver's default backlog of 5 makes concurrent clients wait for
    # SYN retransmissions (a second each).
    request_queue_size = 128

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight = 0
        self._idle = threading.Condition()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # A client has read its whole response before the server's thread
        # is done with the request (closing the WSGI response, tearing down
        # the app context, shutting the socket): until then the request's
        # objects are alive, and a sample would count them as retained.
        with self._idle:
            self._in_flight += 1
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being handled; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _paths(count: int) -> Iterable[str]:
    apps = ("frontend", "billing", "search", "checkout", "auth", "catalog", "ads")
    # 160 currencies for a cache of 128: it fills, then evicts.
    currencies = [a + b + "X" for a in "ABCDEFGHIJKLMNOP" for b in "QRSTUVWXYZ"]
    for i in range(count):
        kind = i % 4
        if kind == 0:
            yield "/app_metric/%s" % apps[i % 7]
        elif kind == 1:
            yield "/exchange_rate/%s" % currencies[(i // 4) % 160]
        elif kind == 2:
            yield "/report/%d" % (i % 1000)
        else:
            yield "/healthz"


def _drive(base: str, paths: List[str], clients: int) -> int:
    """GET every path from *clients* threads; the number of failures."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    lock = threading.Lock()
    queue = list(reversed(paths))
    failures = [0]

    def client() -> None:
        while True:
            with lock:
                if not queue:
                    return
                path = queue.pop()
            try:
                with opener.open(base + path, timeout=10) as response:
                    response.read()
            except OSError:
                with lock:
                    failures[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures[0]


def _get_json(url: str) -> Dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return json.loads(response.read())


# --------------------------------------------------------------------------
# Printing the answers


def _source(filename: str, lineno: int) -> str:
    return linecache.getline(filename, lineno).strip()


def _table(endpoints: List[Dict[str, Any]]) -> List[str]:
    rows = [("endpoint", "requests", "retained", "per request", "verdict")]
    for e in endpoints:
        per = e["bytes_per_request"]
        rows.append(
            (
                e["endpoint"],
                "{:,}".format(e["requests"]),
                format_size(e["retained_bytes"]),
                "-" if per is None else format_size(per, sign=True),
                "LEAKING" if e["leaking"] else e["verdict"],
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:4], widths[1:4])]
        cells.append(row[4])
        lines.append("  " + "  ".join(cells))
    return lines


def _culprit(endpoint: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    leaking = [site for site in endpoint["sites"] if site["leaking"]]
    return (leaking or endpoint["sites"] or [None])[0]


def _next_steps() -> List[str]:
    return [
        "Next, on your own app (then open the URL it logs, from the server itself):",
        "    from pyleakhunt.flask import LeakHunt",
        "    LeakHunt(app, report=True)                  # a Flask app",
        "    from pyleakhunt.wsgi import LeakHuntMiddleware",
        "    app = LeakHuntMiddleware(app, report=True)  # any WSGI app",
        "  and pyleakhunt.asgi.LeakHuntMiddleware for ASGI apps (Starlette, FastAPI).",
        "  curl http://127.0.0.1:PORT/_leakhunt/api on that port gives the JSON;",
        "  docs/tutorial.md walks through a whole hunt.",
    ]


# --------------------------------------------------------------------------
# The demo


def _flask_version() -> Optional[str]:
    try:
        import flask  # noqa: F401
    except ImportError:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flask")
    except PackageNotFoundError:
        return "unknown version"


def run(
    out: TextIO,
    requests: Optional[int] = None,
    seconds: float = 5.0,
    clients: int = 8,
) -> int:
    """Serve the leaky app, drive traffic, print what pyleakhunt found.

    After a warm-up, traffic goes in rounds of concurrent requests from
    *clients* threads, with a sample after each: *requests* in about 24
    rounds, or rounds of 200 for *seconds* (at least 8 rounds).
    Returns 0 when the leaking endpoint and line are found, 1 otherwise.
    """
    if pyleakhunt.is_tracing() or attribution.current() is not None:
        out.write(
            "pyleakhunt demo: tracing is already on in this process; stop it first\n"
        )
        return 1
    flask_version = _flask_version()
    pool = DownstreamPool()
    # The demo samples between rounds of traffic, when no request is in
    # flight (below); a background sample taken mid-round would catch
    # requests' temporary objects and blur the series on a busy machine.
    # A full collection before each sample empties CPython's free lists:
    # in a run this short, their dead objects would credit a healthy
    # endpoint with up to 9 B a request, near the 8 B floor.  And on 3.10
    # to 3.12 they stay empty, so that every object is credited to the
    # endpoint that made it.
    options = dict(
        report=True, nframe=4, interval=3600.0, collect=True, fresh_objects=True
    )
    app = flask_app(pool, **options) if flask_version else wsgi_app(pool, **options)
    # Without a token, the report is on a loopback port of its own.
    extension = app.extensions["pyleakhunt"] if flask_version else app
    server = make_server(
        "127.0.0.1", 0, app, server_class=_ThreadingServer, handler_class=_QuietHandler
    )
    base = "http://127.0.0.1:%d" % server.server_port
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    hunt = attribution.current()
    assert hunt is not None
    if flask_version:
        what = "a Flask app (Flask %s) with pyleakhunt.flask.LeakHunt" % flask_version
    else:
        what = (
            "a plain WSGI app with pyleakhunt.wsgi.LeakHuntMiddleware "
            "(Flask is not installed)"
        )
    out.write(
        "pyleakhunt demo: %s,\nserved by wsgiref on %s, tracing with 4 frames.\n"
        % (what, base)
    )
    try:
        # Warm up (imports, first-request set-up, the client's own modules)
        # before measuring what the process keeps.
        served = warmup = min(48, requests // 10) if requests else 48
        failures = _drive(base, list(_paths(warmup)), clients)
        rss_before = attribution.rss_bytes()
        traced_before = pyleakhunt.get_traced_memory()[0]
        started = time.monotonic()
        rounds = 0
        round_size = max(24, (requests or 0) // 24) if requests else 200
        while True:
            if requests is not None:
                size = min(round_size, requests - served)
                if size <= 0:
                    break
            else:
                if time.monotonic() - started >= seconds and rounds >= 8:
                    break
                size = round_size
            failures += _drive(base, list(_paths(size)), clients)
            served += size
            rounds += 1
            server.wait_idle(timeout=10.0)
            hunt.sample()
        elapsed = time.monotonic() - started
        traced_after = pyleakhunt.get_traced_memory()[0]
        rss_after = attribution.rss_bytes()
        report_url = extension.report_url
        doc = _get_json(report_url + "api")
    finally:
        server.shutdown()
        server.server_close()
        extension.close()
        pool.shutdown()
        attribution.reset()
    return _print_findings(
        out,
        doc,
        served=served,
        failures=failures,
        elapsed=elapsed,
        clients=clients,
        traced=traced_after - traced_before,
        rss=None if rss_before is None or rss_after is None else rss_after - rss_before,
        report_url=report_url,
    )


def _print_findings(
    out: TextIO,
    doc: Dict[str, Any],
    *,
    served: int,
    failures: int,
    elapsed: float,
    clients: int,
    traced: int,
    rss: Optional[int],
    report_url: str,
) -> int:
    lines = [
        "Served %s requests from %d client threads in %.1f s%s."
        % (
            f"{served:,}",
            clients,
            elapsed,
            " (%d failed)" % failures if failures else "",
        ),
        "",
        "1. Is it a leak?  While serving, traced memory grew by %s%s."
        % (
            format_size(traced, sign=True),
            "" if rss is None else " and RSS by %s" % format_size(rss, sign=True),
        ),
        "   Traced memory is live Python objects: when it grows with RSS, the",
        "   process keeps objects (a leak or a cache); it is not fragmentation.",
        "",
        "2. Which endpoint?  From %sapi:" % report_url,
    ]
    lines += _table(doc["endpoints"])
    leaking = [e for e in doc["endpoints"] if e["leaking"]]
    lines.append("")
    code = 1
    if not leaking:
        lines.append("Verdict: no endpoint leaks (no leak found); try --seconds 10.")
    else:
        worst = leaking[0]
        site = _culprit(worst)
        per = format_size(worst["bytes_per_request"] or 0)
        lines.append(
            "3. Which line?  %s keeps %s per request, allocated at:"
            % (worst["endpoint"], per)
        )
        if site is not None:
            code = 0
            # The line of the service first, the library frame it allocated
            # through beneath it, then its callers.
            frames = list(Traceback(tuple(tuple(f) for f in site["traceback"])))
            user, via = user_frame(frames)  # frames: the oldest call first
            shown = frames[: len(frames) - frames[::-1].index(user)]
            for depth, frame in enumerate(reversed(shown)):
                if depth == 1:
                    lines.append("   called from:")
                lines.append("     %s" % location(frame.filename, frame.lineno, 60))
                source = source_line(frame.filename, frame.lineno, 72)
                if source:
                    lines.append("         %s" % source)
                if depth == 0 and via is not None:
                    lines.append("       %s" % via_text(via))
            healthy = [e["endpoint"] for e in doc["endpoints"] if not e["leaking"]]
            lines += [
                "",
                "Verdict: %s leaks %s per request at %s:"
                % (
                    worst["endpoint"],
                    per,
                    location(user.filename, user.lineno, 60),
                ),
                "    %s" % _source(user.filename, user.lineno),
            ]
            if healthy:
                lines.append("Not leaking: %s." % ", ".join(healthy))
                if any(name.endswith("/exchange_rate/<currency>") for name in healthy):
                    lines.append(
                        "(/exchange_rate/<currency> holds a bounded cache: it "
                        "grew, then stopped.)"
                    )
            lines += [
                "Fix: keep bounded statistics in the Profiler (a counter, a",
                "     deque(maxlen=...)) instead of every timing.",
            ]
    lines += [""] + _next_steps()
    out.write("\n".join(lines) + "\n")
    return code


def main(argv: Optional[List[str]] = None) -> int:
    """Run the demo (``python -m pyleakhunt.demo``)."""
    return run(sys.stdout)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
