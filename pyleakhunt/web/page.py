"""The report page and who may read it.

The figures of `pyleakhunt.web.attribution` are served at
``<prefix>/`` (HTML), ``<prefix>/api`` (JSON) and ``<prefix>/snapshot`` (a
snapshot file for ``pyleakhunt top``).  Without a token, only on a port of
its own bound to 127.0.0.1 (`ReportListener`, `LoopbackPage`), never on the
application's; with a token, through the application too, to requests that
carry it (`ReportPage`).  `report_setup` turns the middleware's ``report_*``
options into the page and the listener.

The page is plain HTTP: every integration (WSGI, ASGI, Flask) hands
`ReportPage.respond` the same few facts about a request.
"""

from __future__ import annotations

import errno
import functools
import hmac
import html
import http.server
import io
import ipaddress
import json
import linecache
import logging
import os
import re
import socketserver
import threading
import time
import urllib.parse
import weakref
from dataclasses import dataclass
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Optional,
    Tuple,
)

from .._raw import RawSnapshot
from ..fileformat import write_snapshot
from ..units import format_size
from ..userframe import library_path
from . import attribution
from .attribution import AttributionReport, EndpointReport

__all__ = [
    "DEFAULT_REPORT_PREFIX",
    "LoopbackPage",
    "ReportListener",
    "ReportPage",
    "Response",
    "TOKEN_ENV",
    "html_policy",
    "is_loopback",
    "render_html",
    "report_setup",
]

logger = logging.getLogger("pyleakhunt")


DEFAULT_REPORT_PREFIX = "/_leakhunt"
#: Environment variable read for the report token when none is passed.
TOKEN_ENV = "PYLEAKHUNT_REPORT_TOKEN"


# --------------------------------------------------------------------------
# The report page


@dataclass
class Response:
    """A complete HTTP response of the report page."""

    status: int
    headers: List[Tuple[str, str]]
    body: bytes

    @property
    def status_line(self) -> str:
        return f"{self.status} {_REASONS[self.status]}"


_REASONS = {
    200: "OK",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}

#: Headers that say a request came through a proxy: its peer address is the
#: proxy's (often 127.0.0.1), not the client's.  The loopback listener
#: refuses them (`LoopbackPage`).
PROXY_HEADERS = (
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "x-forwarded-host",
    "via",
)
#: Longest path and token header the page reads; longer is refused.
MAX_REPORT_PATH = 1024
MAX_TOKEN_HEADER = 1024

_SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
]


def is_loopback(address: Optional[str]) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback; False otherwise."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def _check_token(token: Optional[str]) -> Optional[str]:
    if token is None:
        token = os.environ.get(TOKEN_ENV) or None
    if token is None:
        return None
    if (
        not isinstance(token, str)
        or len(token) < 16
        or len(token) > 512
        or not all(33 <= ord(c) < 127 for c in token)
    ):
        raise ValueError(
            "the report token must be 16 to 512 printable ASCII characters "
            "without spaces (for example secrets.token_urlsafe(32))"
        )
    return token


def _check_prefix(prefix: str) -> str:
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    if not prefix or not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", prefix):
        raise ValueError(
            f"report_prefix must be a path such as '/_leakhunt', not {prefix!r}"
        )
    return prefix


def _check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(
            f"report_port must be a port number from 0 to 65535 (0: any free "
            f"port), not {port!r}"
        )
    return port


def _loopback_host(value: Optional[str]) -> bool:
    """True when a ``Host`` header names this machine's loopback interface
    (``localhost``, ``127.x.y.z``, ``[::1]``, any port), or is absent."""
    if value is None:
        return True  # HTTP/1.0 without Host: nothing a browser sends
    host = value.strip().lower()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not re.fullmatch(r":[0-9]{1,5}", rest)):
            return False
    else:
        name, colon, port = host.partition(":")
        if colon and not re.fullmatch(r"[0-9]{1,5}", port):
            return False
    return name == "localhost" or (
        re.fullmatch(r"[0-9a-f.:]+", name) is not None and is_loopback(name)
    )


class ReportPage:
    """The report page served through the application: token required.

    ``<prefix>/`` is HTML, ``<prefix>/api`` JSON, ``<prefix>/snapshot`` an
    aggregated snapshot file of the endpoints' memory.  Rules, in order:

    1. *Who.*  Only requests that carry the token, in ``Authorization:
       Bearer <token>`` or ``X-LeakHunt-Token: <token>``, compared in
       constant time; others get 401, whatever their address.  Never in
       the query string: URLs end up in access logs, browser history and
       Referer headers.  No rule by address can hold on the application's
       port: the address the app sees depends on the server and the
       proxies in front of it (behind nginx on the same host every client
       is 127.0.0.1, and waitress removes the headers that would tell).
       Without a token, the page is served only by a `ReportListener`, on
       a loopback port of its own.
    2. *How.*  GET and HEAD only (405 otherwise).
    3. *What.*  The three paths only (404 otherwise; 414 for a huge path).

    It shows memory figures and source locations (file and line number),
    nothing else: no environment, no request data, no source code.  The
    CLI shows source lines, from the files on the machine that reads the
    snapshot.  Figures from sampled tracing are labelled as estimates.
    Whatever goes wrong while rendering, the answer is a clean 503.
    """

    def __init__(
        self, prefix: str = DEFAULT_REPORT_PREFIX, token: Optional[str] = None
    ):
        self.prefix = _check_prefix(prefix)
        self.token = _check_token(token)
        if self.token is None:
            raise ValueError(
                "the report page is served through the application only with a "
                f"token (report_token= or {TOKEN_ENV}); without one, pyleakhunt "
                "serves it on a loopback port of its own (report=True)"
            )

    def matches(self, path: str) -> bool:
        """True when *path* is the page's (the prefix or below it)."""
        prefix = self.prefix
        return path.startswith(prefix) and (
            len(path) == len(prefix) or path[len(prefix)] == "/"
        )

    def respond(
        self,
        method: str,
        path: str,
        header: Callable[[str], Optional[str]],
        client: Optional[str],
        base: str = "",
    ) -> Response:
        """The response to a request for *path* (which `matches`).

        *header* returns a request header by lower-case name (or None),
        *client* is the peer's IP address, *base* the mount point
        (``SCRIPT_NAME``, ``root_path``) for links.
        """
        try:
            response = self._route(method, path, header, client, base)
        except Exception:  # never a 500 or a traceback from the report
            logger.exception("pyleakhunt: the report page failed")
            response = _text(503, "the report is not available now\n")
        if method == "HEAD":
            response.body = b""  # Content-Length stays that of GET
        return response

    def _route(
        self,
        method: str,
        path: str,
        header: Callable[[str], Optional[str]],
        client: Optional[str],
        base: str,
    ) -> Response:
        refused = self._refusal(header, client)
        if refused is not None:
            return refused
        if method not in ("GET", "HEAD"):
            return _text(405, "use GET\n", [("Allow", "GET, HEAD")])
        if len(path) > MAX_REPORT_PATH:
            return _text(414, "path too long\n")
        page = path[len(self.prefix) :]
        if page in ("", "/"):
            return self._html(base)
        if page == "/api":
            return self._json()
        if page == "/snapshot":
            return self._snapshot()
        return _text(404, "no such report page\n")

    def _refusal(
        self, header: Callable[[str], Optional[str]], client: Optional[str]
    ) -> Optional[Response]:
        assert self.token is not None
        given = _bearer(header("authorization")) or header("x-leakhunt-token")
        if given is not None and len(given) > MAX_TOKEN_HEADER:
            return _text(431, "token header too large\n")
        if given is None or not hmac.compare_digest(
            given.encode("utf-8", "replace"), self.token.encode("ascii")
        ):
            return _text(
                401,
                "pyleakhunt: send the report token in 'Authorization: Bearer "
                "<token>' or 'X-LeakHunt-Token: <token>' (never in the URL)\n",
                [("WWW-Authenticate", 'Bearer realm="pyleakhunt"')],
            )
        return None

    # -- the three pages ----------------------------------------------------

    def _current(self) -> attribution.Attribution:
        current = attribution.current()
        if current is None:
            raise RuntimeError("pyleakhunt attribution is not running")
        return current

    def _json(self) -> Response:
        doc = self._current().report().to_json()
        body = json.dumps(doc, indent=1).encode("ascii") + b"\n"
        return _ok(body, [("Content-Type", "application/json")])

    def _html(self, base: str) -> Response:
        current = self._current()
        report = current.report()
        text = render_html(report, base + self.prefix, current.snapshot())
        return _ok(
            text.encode("utf-8"),
            [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Security-Policy", html_policy(text)),
            ],
        )

    def _snapshot(self) -> Response:
        raw = self._current().snapshot()
        out = io.BytesIO()
        write_snapshot(out, raw)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(raw.timestamp))
        name = f"pyleakhunt-{raw.pid}-{stamp}.plh"
        return _ok(
            out.getvalue(),
            [
                ("Content-Type", "application/octet-stream"),
                ("Content-Disposition", f'attachment; filename="{name}"'),
            ],
        )


class LoopbackPage(ReportPage):
    """The report page as a `ReportListener` serves it: no token.

    The listener is bound to 127.0.0.1, so only this machine can connect.
    Three more checks, for what could still reach it from elsewhere:

    - the peer must be a loopback address (it always is, unless the
      listener was bound otherwise);
    - the request must carry no proxy header (``X-Forwarded-For``,
      ``Forwarded``, ``X-Real-IP``, ``Via``, ...): a proxy on this machine
      pointed at the listener's port by mistake would otherwise relay
      anyone;
    - ``Host`` must name the loopback interface (``localhost``,
      ``127.0.0.1``, ``[::1]``, any port): a web page in a browser on this
      machine could otherwise read the report through a domain name that
      it re-points at 127.0.0.1 (DNS rebinding).

    Others get 403.
    """

    def __init__(self, prefix: str = DEFAULT_REPORT_PREFIX) -> None:
        self.prefix = _check_prefix(prefix)
        self.token = None

    def _refusal(
        self, header: Callable[[str], Optional[str]], client: Optional[str]
    ) -> Optional[Response]:
        if not is_loopback(client):
            return _text(
                403, "pyleakhunt: the report listener answers loopback clients only\n"
            )
        if any(header(name) is not None for name in PROXY_HEADERS):
            return _text(
                403,
                "pyleakhunt: the request came through a proxy; the report "
                "listener answers direct clients on this machine only (configure "
                "a token to reach the report through the application)\n",
            )
        if not _loopback_host(header("host")):
            return _text(
                403,
                "pyleakhunt: the report listener answers requests addressed to "
                "localhost or a loopback address only\n",
            )
        return None


# -- the loopback listener -----------------------------------------------------


class _ListenerHandler(http.server.BaseHTTPRequestHandler):
    """One request to a `ReportListener`: the page's rules, then its answer."""

    server_version = "pyleakhunt"
    protocol_version = "HTTP/1.0"  # one request a connection: nothing to track
    timeout = 10  # a client that sends nothing does not keep its thread

    def _answer(self) -> None:
        page: LoopbackPage = self.server.page  # type: ignore[attr-defined]
        target = self.path.partition("?")[0].partition("#")[0]
        path = urllib.parse.unquote(target, encoding="latin-1")
        if path == "/":  # the port is the page's alone: its root is the page
            path = page.prefix + "/"
        headers = self.headers

        def header(name: str) -> Optional[str]:
            values = headers.get_all(name)
            return ",".join(values) if values else None

        if page.matches(path):
            response = page.respond(self.command, path, header, self.client_address[0])
        else:
            response = _text(404, "no such report page\n")
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        if response.body:
            self.wfile.write(response.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("pyleakhunt: report listener: " + format, *args)


class _ListenerServer(socketserver.ThreadingTCPServer):
    daemon_threads = True  # a stuck client never holds up the exit
    block_on_close = False
    allow_reuse_address = True  # a restart right after close() can rebind
    request_queue_size = 16

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-answer is no news for the app's stderr.
        logger.debug("pyleakhunt: report listener: request failed", exc_info=True)


#: Every listener of the process, for the fork handlers.
_listeners: weakref.WeakSet[ReportListener] = weakref.WeakSet()


class ReportListener:
    """The report page on a port of its own, bound to 127.0.0.1.

    ``ReportListener(prefix="/_leakhunt", port=0)``; `start` binds and
    serves from a daemon thread, `close` stops.  The page is at
    ``http://127.0.0.1:<port><prefix>/`` (`url`), and also at ``/``.  No
    server or proxy configuration in front of the application can expose
    it: it is not on the application's port at all, as Go serves pprof on
    a private mux.  *port* 0 lets the system choose a free port; `start`
    logs the URL (a WARNING on the ``pyleakhunt`` logger, so that it shows
    without any logging configuration).

    **Forks.**  A forked child does not inherit the listener: its copy of
    the socket is closed (never shut down, which would stop the parent's
    too).  The child listens anew when it serves its first request
    (`pyleakhunt.attribution.on_first_request_after_fork`), so each worker
    of a pre-fork server such as gunicorn serves its own figures, and a
    parent that serves no request (gunicorn's master) is never in the way
    of its workers... except on a fixed *port*, which only one process can
    hold: the others log why they do not listen, and what to do.
    """

    def __init__(self, prefix: str = DEFAULT_REPORT_PREFIX, port: int = 0) -> None:
        self.page = LoopbackPage(prefix)
        #: The port asked for (0: any).
        self.requested_port = _check_port(port)
        self._lock = threading.Lock()
        self._server: Optional[_ListenerServer] = None
        self._thread: Optional[threading.Thread] = None
        #: In a forked child: the parent's pid, when the parent listened.
        self._forked_from: Optional[int] = None
        _listeners.add(self)

    @property
    def port(self) -> Optional[int]:
        """The port listened on, or None when not listening."""
        server = self._server
        return None if server is None else server.server_address[1]

    @property
    def url(self) -> Optional[str]:
        """``http://127.0.0.1:<port><prefix>/``, or None when not listening."""
        port = self.port
        return None if port is None else f"http://127.0.0.1:{port}{self.page.prefix}/"

    def start(self) -> bool:
        """Listen and serve; log the URL.  Returns False, after logging
        why, when the port cannot be bound (never raises for that: the
        application must run whatever happens to its report)."""
        with self._lock:
            if self._server is not None:
                return True
            try:
                server = _ListenerServer(
                    ("127.0.0.1", self.requested_port), _ListenerHandler
                )
            except OSError as exc:
                logger.warning(self._bind_failure(exc))
                self._forked_from = None
                return False
            server.page = self.page  # type: ignore[attr-defined]
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.5},
                name="pyleakhunt-report",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
            self._forked_from = None
        logger.warning(
            "pyleakhunt: the report page of process %d is at %s "
            "(loopback only; a token serves it through the application)",
            os.getpid(),
            self.url,
        )
        return True

    def _bind_failure(self, exc: OSError) -> str:
        text = (
            "pyleakhunt: the report page of process %d is not served: cannot "
            "listen on 127.0.0.1:%d (%s)."
            % (os.getpid(), self.requested_port, exc.strerror or exc)
        )
        if exc.errno == errno.EADDRINUSE:
            if self._forked_from is not None:
                text += (
                    " Process %d, from which this one was forked, listens there "
                    "(a pre-fork server, such as gunicorn with --preload)."
                    % self._forked_from
                )
            else:
                text += " Another process listens there (another worker?)."
            text += (
                " With several processes, give report_port=0: each listens on a "
                "free port and logs it, as this line is logged; or run one "
                "worker while hunting."
            )
        return text

    def close(self) -> None:
        """Stop listening (waits up to half a second).  Idempotent."""
        with self._lock:
            server, self._server = self._server, None
            thread, self._thread = self._thread, None
        if server is None:
            return
        if thread is not None and thread is not threading.current_thread():
            server.shutdown()
            thread.join()
        server.server_close()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        server, self._server = self._server, None
        self._thread = None
        if server is None:
            return
        self._forked_from = os.getppid()
        try:
            server.socket.close()  # this process's descriptor only
        except OSError:
            pass

    def _restart_after_fork(self) -> None:
        if self._forked_from is not None:
            self.start()


def _listeners_after_fork_in_child() -> None:
    for listener in list(_listeners):
        listener._after_fork_in_child()


def _restart_listeners_after_fork() -> None:
    for listener in list(_listeners):
        try:
            listener._restart_after_fork()
        except Exception:  # a request must never fail for the report
            logger.exception("pyleakhunt: the report listener did not restart")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_listeners_after_fork_in_child)
attribution.on_first_request_after_fork(_restart_listeners_after_fork)


def report_setup(
    report: bool,
    prefix: Optional[str],
    token: Optional[str],
    port: Optional[int],
) -> Tuple[Optional[ReportPage], Optional[ReportListener]]:
    """The integrations' report options, checked; the listener started.

    Returns the page the application serves (with a token only) and the
    loopback listener (without a token, or when *port* is given), either
    None; the caller starts the listener once the attribution runs.  The
    page is on when *report* is true or any other option is given; the
    environment's token alone never turns it on.
    """
    if not (report or prefix is not None or token is not None or port is not None):
        return None, None
    prefix = _check_prefix(prefix or DEFAULT_REPORT_PREFIX)
    token = _check_token(token)
    if port is not None:
        _check_port(port)
    page = ReportPage(prefix, token) if token is not None else None
    listener = None
    if token is None or port is not None:
        listener = ReportListener(prefix, port or 0)
    if page is not None:
        logger.info(
            "pyleakhunt: the report page is served through the application at "
            "%s/ to requests that carry the token",
            prefix,
        )
    return page, listener


def _bearer(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def _ok(body: bytes, headers: List[Tuple[str, str]]) -> Response:
    length = ("Content-Length", str(len(body)))
    return Response(200, [*headers, *_SECURITY_HEADERS, length], body)


def _text(
    status: int, text: str, extra: Optional[List[Tuple[str, str]]] = None
) -> Response:
    body = text.encode("utf-8")
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        *_SECURITY_HEADERS,
        *(extra or []),
        ("Content-Length", str(len(body))),
    ]
    return Response(status, headers, body)


# -- HTML ----------------------------------------------------------------------

#: Flame graphs drawn, one an endpoint: the leaking ones first, then the
#: biggest (the page stays light whatever ``max_endpoints`` allows).
FLAME_ENDPOINTS = 12

_CSP_META = re.compile(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">')
#: When the page's own policy cannot be read: nothing runs.
_STRICT_POLICY = "default-src 'none'; style-src 'unsafe-inline'"


@functools.lru_cache(maxsize=1)
def _web_page() -> Any:
    """The shared HTML page (`pyleakhunt.export.html.Page`), without source
    lines; imported on the first page served, not with the middleware.

    The report page shows figures and locations (file, line, function),
    never the program's source code: ``pyleakhunt top`` on the downloaded
    snapshot shows it, from the files where it runs.
    """
    from ..export import html as export_html

    width = export_html.SOURCE_WIDTH

    class WebPage(export_html.Page):
        def __post_init__(self) -> None:
            super().__post_init__()
            self._lines: set = set()

        def flame_graph(self, title: str, records: Any, **options: Any) -> None:
            records = list(records)
            for frames, _, _ in records:
                self._lines.update(frames)
            super().flame_graph(title, records, **options)

        def data(self) -> Dict[str, Any]:
            # Every text of the frame table that is the source line of a
            # frame drawn (as read, or cut to the renderer's width) is
            # blanked, wherever the renderer keeps it.
            hidden = set()
            for filename, lineno in self._lines:
                line = linecache.getline(filename, lineno).strip() if lineno else ""
                if line:
                    hidden.add(line)
                    hidden.add(line[: width - 3] + "...")
            doc = super().data()
            doc["frames"] = [
                [
                    "" if isinstance(value, str) and value in hidden else value
                    for value in frame
                ]
                for frame in doc["frames"]
            ]
            return doc

    return WebPage, export_html.Series


def _approx(estimated: bool) -> str:
    return "~" if estimated else ""


def _verdict_line(e: EndpointReport, estimated: bool) -> str:
    approx = _approx(estimated)
    per = (
        "-"
        if e.bytes_per_request is None
        else approx + format_size(e.bytes_per_request, sign=True)
    )
    line = "%s: %s after %s requests: %s%s retained, %s per request" % (
        e.endpoint,
        e.verdict.upper() if e.leaking else e.verdict,
        f"{e.requests:,}",
        approx,
        format_size(e.retained_bytes),
        per,
    )
    growing = [site for site in e.sites if site.leaking]
    if growing:
        line += "; grows at %s" % ", ".join(_site_text(site) for site in growing[:3])
    return line


def _site_text(site: attribution.SiteReport) -> str:
    """``app.py:12`` or ``app.py:12 (via json/decoder.py:353)``."""
    text = f"{site.filename}:{site.lineno}"
    if site.via is not None:
        text += " (via %s:%d)" % (library_path(site.via[0]), site.via[1])
    return text


def _endpoint_records(
    raw: Optional[RawSnapshot],
) -> Dict[str, List[Tuple[Any, int, int]]]:
    """Endpoint name -> flame-graph records (frames, bytes, blocks)."""
    records: Dict[str, List[Tuple[Any, int, int]]] = {}
    if raw is None:
        return records
    for site in raw.sites:
        name = raw.tags.get(site.tag)
        if name is None or site.size <= 0:
            continue
        if site.frames and site.frames[0][0] in attribution.OWN_FILES:
            continue  # the hunter's own memory, not the endpoint's
        records.setdefault(name, []).append((site.frames, site.size, site.count))
    return records


def render_html(
    report: AttributionReport, prefix: str, snapshot: Optional[RawSnapshot] = None
) -> str:
    """The HTML page, drawn by the shared renderer (`pyleakhunt.export.html`).

    A chart of each endpoint's retained bytes against the requests it
    served (one line an endpoint: a leak is a line that keeps rising, a
    cache one that flattens), the verdicts, then a flame graph of the
    memory each endpoint retains now (from *snapshot*, an aggregated
    snapshot of the tagged memory; none without it).
    """
    est = report.estimated
    subtitle = [
        "traced %s%s, RSS %s, allocated outside requests %s%s"
        % (
            _approx(est),
            "-" if report.traced_bytes is None else format_size(report.traced_bytes),
            "-" if report.rss_bytes is None else format_size(report.rss_bytes),
            _approx(est),
            format_size(report.untagged_bytes),
        ),
        "%d samples, one every %g s; %d endpoints"
        % (report.samples, report.interval, len(report.endpoints)),
    ]
    page_class, series_class = _web_page()
    page = page_class("pyleakhunt: which endpoint leaks?", subtitle)
    warnings = []
    if est:
        warnings.append(
            "Estimates (~): sampled tracing, one allocation per %s on average."
            % format_size(report.sample_bytes)
        )
    if not report.tracing:
        warnings.append("pyleakhunt is not tracing.")
    if report.error:
        warnings.append("The last sample failed: %s" % report.error)
    if warnings:
        page.notes("Warnings", warnings)
    if not report.endpoints:
        page.notes("Endpoints", ["No request served yet."])
    else:
        page.chart(
            "Retained memory against requests served",
            [
                series_class(e.endpoint, list(e.points), kind="endpoint")
                for e in report.endpoints
            ],
            x_kind="count",
            x_label="requests served",
            notes=[
                "One line an endpoint: its retained bytes each time it was "
                "sampled, against the requests it had served. A leak keeps "
                "rising with the requests; a cache flattens once full."
            ],
        )
        page.notes(
            "Verdicts (the sustained-growth rule, against requests served)",
            [_verdict_line(e, est) for e in report.endpoints],
        )
    records = _endpoint_records(snapshot)
    drawn = report.endpoints[:FLAME_ENDPOINTS]
    for e in drawn:
        page.flame_graph(
            "What %s retains%s" % (e.endpoint, " (LEAKING)" if e.leaking else ""),
            records.get(e.endpoint, ()),
            empty="It retains nothing now.",
        )
    if len(report.endpoints) > len(drawn):
        page.notes(
            "More endpoints",
            [
                "Flame graphs are drawn for the first %d endpoints of %d; the "
                "snapshot below holds them all." % (len(drawn), len(report.endpoints))
            ],
        )
    page.notes(
        "More",
        [
            "%s/api: these figures as JSON." % prefix,
            "%s/snapshot: the endpoints' memory as a snapshot file, for "
            "'pyleakhunt top FILE' where the code is (it shows source lines; "
            "this page does not)." % prefix,
        ],
    )
    return page.render()


def html_policy(page: str) -> str:
    """The Content-Security-Policy of a rendered page (its meta element),
    to send as a header too: the header applies before the page is read."""
    match = _CSP_META.search(page)
    return html.unescape(match.group(1)) if match else _STRICT_POLICY
