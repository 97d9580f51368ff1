"""The WSGI middleware: endpoint names, tags, the response body, the report page."""

import hmac
import http.client
import io
import json
import logging
import os
import socket
import socketserver
import threading
import urllib.parse
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import FileWrapper, setup_testing_defaults

import pytest
from helpers import free_port, fresh_web_state

from pyleakhunt import attribution
from pyleakhunt.attribution import TAG_VAR
from pyleakhunt.fileformat import read_snapshot
from pyleakhunt.wsgi import (
    LeakHuntMiddleware,
    LoopbackPage,
    ReportPage,
    endpoint_key,
    is_loopback,
)

LEAKED = []
TOKEN = "s3cret-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def fresh_attribution():
    with fresh_web_state(LEAKED):
        yield


def leaky_app(environ, start_response):
    """/leak/* keeps 1000 bytes per request, /stream/* keeps them while
    the body is iterated, anything else keeps nothing."""
    path = environ["PATH_INFO"]
    if path.startswith("/leak"):
        LEAKED.append(bytearray(1000))
    elif path.startswith("/stream"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return stream_body()
    else:
        scratch = [bytearray(100) for _ in range(10)]
        del scratch
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def stream_body():
    yield b"first"
    LEAKED.append(bytearray(3000))  # allocated after the app returned
    yield b"second"


def call(app, path="/", method="GET", remote="127.0.0.1", headers=None, query=""):
    """Call a WSGI app; return (status, headers, body)."""
    environ = {}
    setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD=method, PATH_INFO=path, QUERY_STRING=query)
    if remote is None:
        environ.pop("REMOTE_ADDR", None)
    else:
        environ["REMOTE_ADDR"] = remote
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    seen = {}

    def start_response(status, response_headers, exc_info=None):
        seen["status"] = int(status.split()[0])
        seen["headers"] = dict(response_headers)

    body = app(environ, start_response)
    try:
        data = b"".join(body)
    finally:
        if hasattr(body, "close"):
            body.close()
    return seen["status"], seen["headers"], data


def endpoints(hunt):
    """The endpoints' figures after a fresh sample."""
    return {e.endpoint: e for e in hunt.report(refresh=0).endpoints}


# --------------------------------------------------------------------------
# Endpoint names


@pytest.mark.parametrize(
    "method, path, expected",
    [
        ("GET", "/", "GET /"),
        ("GET", "/users/42/orders", "GET /users/<id>/orders"),
        ("post", "/users/42", "POST /users/<id>"),
        ("GET", "/items/3f2b1c9e-8a7d-4c6b-9e5f-0123456789ab", "GET /items/<id>"),
        ("GET", "/blobs/deadbeef01", "GET /blobs/<id>"),
        ("GET", "/reset/Zm9vYmFyMTIzNDU2Nzg5MA", "GET /reset/<id>"),
        ("GET", "/day/2024-05-01", "GET /day/<id>"),
        ("GET", "/api/v2/app_metric/frontend", "GET /api/v2/app_metric/frontend"),
        ("GET", "/static/app.css", "GET /static/app.css"),
        ("BREW", "/pot", "OTHER /pot"),
        ("GET", "/" + "x" * 100, "GET /<id>"),
        ("GET", "/a\x00b", "GET /a?b"),
        (
            "GET",
            "/1/2/3/4/5/6/7/8/9/10",
            "GET /<id>/<id>/<id>/<id>/<id>/<id>/<id>/<id>/...",
        ),
    ],
)
def test_paths_fold_id_like_segments(method, path, expected):
    assert endpoint_key(method, path) == expected


def test_endpoint_names_stay_short_whatever_the_path():
    assert len(endpoint_key("GET", "/word" * 500)) <= 210


def test_requests_are_counted_under_their_folded_endpoint():
    app = LeakHuntMiddleware(leaky_app, interval=3600)
    for i in range(5):
        assert call(app, "/leak/%d" % i)[0] == 200
    call(app, "/other")
    hunt = attribution.current()
    hunt.sample()
    found = endpoints(hunt)
    assert found["GET /leak/<id>"].requests == 5
    assert found["GET /other"].requests == 1
    assert found["GET /leak/<id>"].retained_bytes >= 5000


def json_app(environ, start_response):
    """Keeps each request's parsed body: allocated in json/decoder.py."""
    LEAKED.append(json.loads(environ["wsgi.input"].read()))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def test_a_leak_made_inside_a_library_is_reported_at_the_apps_line():
    app = LeakHuntMiddleware(json_app, interval=3600)
    body = json.dumps(["x" * 100 + str(i) for i in range(20)]).encode()
    hunt = attribution.current()
    for _ in range(8):
        for _ in range(25):
            environ = {}
            setup_testing_defaults(environ)
            environ.update(REQUEST_METHOD="POST", PATH_INFO="/orders")
            environ["wsgi.input"] = io.BytesIO(body)
            app(environ, lambda status, headers, exc_info=None: None)
        hunt.sample()
    report = endpoints(hunt)["POST /orders"]
    assert report.leaking
    # The first line named is the app's, with the library's beneath it.
    first = report.sites[0]
    assert (first.filename, first.lineno) == (
        __file__,
        json_app.__code__.co_firstlineno + 2,
    )
    assert first.leaking
    assert first.via is not None and first.via[0].endswith("json/decoder.py")
    assert first.to_json()["via"] == list(first.via)
    # What the library's line kept before the tracer looked for the user's
    # line below it (its first 64 blocks) no longer grows.
    for site in report.sites:
        if site.filename.endswith("json/decoder.py"):
            assert not site.leaking, report.sites


def test_a_key_function_names_endpoints():
    app = LeakHuntMiddleware(leaky_app, interval=3600, key=lambda e: "leaks")
    call(app, "/leak/1")
    assert "leaks" in endpoints(attribution.current())


# --------------------------------------------------------------------------
# Tags and the response body


def test_the_tag_is_set_while_the_app_runs_and_reset_after():
    seen = []

    def app(environ, start_response):
        seen.append(TAG_VAR.get())
        start_response("200 OK", [])
        return [b""]

    wrapped = LeakHuntMiddleware(app, interval=3600)
    call(wrapped, "/x")
    assert seen[0] > 0
    assert TAG_VAR.get() == 0


def test_the_tag_is_reset_when_the_app_raises():
    def app(environ, start_response):
        raise KeyError("boom")

    with pytest.raises(KeyError):
        call(LeakHuntMiddleware(app, interval=3600), "/x")
    assert TAG_VAR.get() == 0


def test_a_body_consumed_after_the_app_returned_is_attributed():
    app = LeakHuntMiddleware(leaky_app, interval=3600)
    for _ in range(3):
        assert call(app, "/stream/1")[2] == b"firstsecond"
    hunt = attribution.current()
    hunt.sample()
    stream = endpoints(hunt)["GET /stream/<id>"]
    assert stream.retained_bytes >= 3 * 3000
    assert stream.sites[0].lineno == stream_body.__code__.co_firstlineno + 2
    assert TAG_VAR.get() == 0


def test_close_runs_under_the_tag_and_is_called_once():
    closed = []

    class Body:
        def __iter__(self):
            return iter([b"a", b"b"])

        def close(self):
            closed.append(TAG_VAR.get())

    def app(environ, start_response):
        start_response("200 OK", [])
        return Body()

    call(LeakHuntMiddleware(app, interval=3600), "/x")
    assert len(closed) == 1 and closed[0] > 0
    assert TAG_VAR.get() == 0


def test_bodies_keep_what_servers_look_at():
    wrapper = FileWrapper(io.BytesIO(b"file"))

    def app(environ, start_response):
        start_response("200 OK", [])
        path = environ["PATH_INFO"]
        if path == "/list":
            return [b"one chunk"]
        if path == "/file":
            return environ["wsgi.file_wrapper"](io.BytesIO(b"file"))
        return wrapper if path == "/sized" else iter([b"x"])

    mw = LeakHuntMiddleware(app, interval=3600)
    environ = {}
    setup_testing_defaults(environ)
    environ["wsgi.file_wrapper"] = FileWrapper
    for path, check in [
        ("/list", lambda body: body == [b"one chunk"]),  # unwrapped
        ("/file", lambda body: isinstance(body, FileWrapper)),  # sendfile stays
        ("/other", lambda body: not hasattr(body, "__len__")),
    ]:
        body = mw(dict(environ, PATH_INFO=path), lambda *a: None)
        assert check(body), path

    class Sized(list):
        pass

    def sized_app(environ, start_response):
        start_response("200 OK", [])
        return Sized([b"x"])

    body = LeakHuntMiddleware(sized_app, interval=3600)(environ, lambda *a: None)
    assert len(body) == 1  # a server may set Content-Length from it


# --------------------------------------------------------------------------
# The report page: who may see it

AUTH = {"X-LeakHunt-Token": TOKEN}


def fetch(url, headers=None, host=None, method="GET"):
    """(status, headers, body) of a request to *url*, over HTTP; *host*
    replaces the Host header."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.putrequest(method, parts.path or "/", skip_host=host is not None)
        if host is not None:
            connection.putheader("Host", host)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture
def reported():
    """An app whose page is served through it with a token; three requests
    served and sampled.  Call it with ``headers=AUTH``."""
    app = LeakHuntMiddleware(leaky_app, report_token=TOKEN, interval=3600)
    for i in range(3):
        call(app, "/leak/%d" % i)
    attribution.current().sample()
    return app


@pytest.fixture
def listening():
    """An app with the report on and no token: the loopback listener."""
    app = LeakHuntMiddleware(leaky_app, report=True, interval=3600)
    for i in range(3):
        call(app, "/leak/%d" % i)
    attribution.current().sample()
    yield app
    app.close()


def test_the_report_is_off_unless_enabled(monkeypatch):
    monkeypatch.setenv("PYLEAKHUNT_REPORT_TOKEN", TOKEN)  # alone: still off
    app = LeakHuntMiddleware(leaky_app, interval=3600)
    status, _, body = call(app, "/_leakhunt/api", headers=AUTH)
    assert (status, body) == (200, b"ok")  # the app's own answer
    assert app.report_url is None and app.listener is None


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_without_a_token_the_app_never_serves_the_page(listening, address):
    # Even to a loopback client without any proxy header: on the app's port
    # a loopback peer may be a proxy relaying anyone.
    for path in ("/_leakhunt", "/_leakhunt/", "/_leakhunt/api", "/_leakhunt/snapshot"):
        assert call(listening, path, remote=address)[2] == b"ok"
    assert listening.page is None


def test_without_a_token_the_page_is_served_on_a_loopback_port_of_its_own(
    listening,
):
    url = listening.report_url
    assert url.startswith("http://127.0.0.1:") and url.endswith("/_leakhunt/")
    assert listening.listener.port != 0
    assert listening.listener._server.socket.getsockname()[0] == "127.0.0.1"
    status, headers, body = fetch(url + "api")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["endpoints"][0]["endpoint"] == "GET /leak/<id>"
    # Its root is the page too: the port serves nothing else.
    assert b"which endpoint leaks?" in fetch(url.replace("/_leakhunt/", "/"))[2]
    assert fetch(url.replace("/_leakhunt/", "/other"))[0] == 404


def test_the_listener_logs_where_it_is(caplog):
    with caplog.at_level(logging.WARNING, logger="pyleakhunt"):
        app = LeakHuntMiddleware(leaky_app, report=True, interval=3600)
    try:
        assert any(app.report_url in r.getMessage() for r in caplog.records)
    finally:
        app.close()


@pytest.mark.parametrize(
    "header", ["X-Forwarded-For", "Forwarded", "X-Real-IP", "Via", "X-Forwarded-Host"]
)
def test_the_listener_refuses_proxied_requests(listening, header):
    status, _, body = fetch(listening.report_url + "api", headers={header: "1.2.3.4"})
    assert status == 403 and b"proxy" in body and b"retained" not in body


@pytest.mark.parametrize(
    "host, allowed",
    [
        ("localhost", True),
        ("LOCALHOST:9000", True),
        ("127.0.0.1", True),
        ("127.0.0.1:80", True),
        ("[::1]:8080", True),
        ("evil.example", False),
        ("rebind.evil.example:80", False),
        ("127.0.0.1.evil.example", False),
        ("localhost.evil.example", False),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("[::1]evil", False),
        ("127.0.0.1:80:80", False),
        ("", False),
    ],
)
def test_the_listener_answers_only_requests_addressed_to_loopback(
    listening, host, allowed
):
    # A page in a browser here could otherwise read it by DNS rebinding.
    status, _, body = fetch(listening.report_url + "api", host=host)
    assert (status == 200) is allowed, (status, body)
    if not allowed:
        assert status == 403 and b"loopback" in body


@pytest.mark.parametrize("address", ["10.0.0.1", "192.168.1.5", "2001:db8::1", None])
def test_the_listeners_page_refuses_other_peers(address):
    page = LoopbackPage()
    response = page.respond("GET", "/_leakhunt/api", lambda name: None, address)
    assert response.status == 403 and b"loopback clients only" in response.body


def test_a_given_report_port_is_listened_on():
    port = free_port()
    app = LeakHuntMiddleware(leaky_app, report=True, report_port=port, interval=3600)
    try:
        assert app.report_url == "http://127.0.0.1:%d/_leakhunt/" % port
        assert fetch(app.report_url)[0] == 200
    finally:
        app.close()


def test_a_taken_report_port_is_logged_and_the_app_still_serves(caplog):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with caplog.at_level(logging.WARNING, logger="pyleakhunt"):
            app = LeakHuntMiddleware(
                leaky_app, report=True, report_port=port, interval=3600
            )
        assert app.report_url is None
        message = " ".join(r.getMessage() for r in caplog.records)
        assert "cannot listen on 127.0.0.1:%d" % port in message
        assert "report_port=0" in message
        assert call(app, "/leak/1")[2] == b"ok"
    finally:
        taken.close()


def test_close_stops_the_listener(listening):
    port = listening.listener.port
    listening.close()
    assert listening.report_url is None
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    listening.close()  # idempotent


@pytest.mark.parametrize("port", [-1, 65536, "8080", 1.5, True])
def test_odd_report_ports_are_refused_at_start(port):
    with pytest.raises(ValueError, match="report_port"):
        LeakHuntMiddleware(leaky_app, report=True, report_port=port)


def test_with_a_token_the_app_serves_it_and_no_listener_runs_unless_a_port_is_given():
    app = LeakHuntMiddleware(leaky_app, report_token=TOKEN, interval=3600)
    assert app.listener is None and app.report_url is None
    assert call(app, "/_leakhunt/api", headers=AUTH)[0] == 200
    both = LeakHuntMiddleware(
        leaky_app, report_token=TOKEN, report_port=0, interval=3600
    )
    try:
        assert fetch(both.report_url + "api")[0] == 200  # no token asked here
        assert call(both, "/_leakhunt/api", remote="127.0.0.1")[0] == 401
    finally:
        both.close()


def test_a_report_page_through_the_app_needs_a_token():
    with pytest.raises(ValueError, match="token"):
        ReportPage("/_leakhunt")


def test_with_a_token_only_requests_carrying_it_are_answered(reported):
    remote = "203.0.113.9"
    for headers in (
        {"Authorization": "Bearer " + TOKEN},
        {"Authorization": "bearer   " + TOKEN},
        {"X-LeakHunt-Token": TOKEN},
    ):
        assert (
            call(reported, "/_leakhunt/api", remote=remote, headers=headers)[0] == 200
        )
    for headers in (
        {},
        {"Authorization": "Bearer " + TOKEN[:-1]},
        {"Authorization": "Bearer " + TOKEN + "x"},
        {"Authorization": "Basic " + TOKEN},
        {"Authorization": TOKEN},
        {"X-LeakHunt-Token": ""},
    ):
        status, response_headers, _ = call(
            reported, "/_leakhunt/api", remote=remote, headers=headers
        )
        assert status == 401, headers
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
    # Loopback alone is not enough, with or without proxy headers.
    assert call(reported, "/_leakhunt/api", remote="127.0.0.1")[0] == 401


def test_the_token_is_never_accepted_in_the_url(reported):
    for query in (
        "token=" + TOKEN,
        "access_token=" + TOKEN,
        "X-LeakHunt-Token=" + TOKEN,
    ):
        status, _, body = call(reported, "/_leakhunt/api", query=query)
        assert status == 401 and b"never in the URL" in body


def test_tokens_are_compared_in_constant_time(reported, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    call(reported, "/_leakhunt/api", headers={"X-LeakHunt-Token": "wrong-token-value"})
    assert calls == [(b"wrong-token-value", TOKEN.encode())]


def test_weak_or_odd_tokens_are_refused_at_start():
    for token in ("short", "has a space in it!!", "x" * 600, "caf\u00e9" * 5):
        with pytest.raises(ValueError, match="token"):
            LeakHuntMiddleware(leaky_app, report=True, report_token=token)
    assert attribution.current() is None  # refused before anything started


def test_the_token_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("PYLEAKHUNT_REPORT_TOKEN", TOKEN)
    app = LeakHuntMiddleware(leaky_app, report=True, interval=3600)
    assert app.listener is None
    assert call(app, "/_leakhunt/api", remote="203.0.113.9")[0] == 401
    assert call(app, "/_leakhunt/api", remote="203.0.113.9", headers=AUTH)[0] == 200


def test_a_huge_token_header_gets_a_clean_4xx(reported):
    status, _, _ = call(
        reported, "/_leakhunt/api", headers={"X-LeakHunt-Token": "x" * 100_000}
    )
    assert status == 431


def test_loopback_addresses():
    assert (
        is_loopback("127.0.0.1")
        and is_loopback("::1")
        and is_loopback("fe80::1%lo") is False
    )
    assert (
        not is_loopback("0.0.0.0") and not is_loopback(None) and not is_loopback("::")
    )


# --------------------------------------------------------------------------
# The listener in forked processes (pre-fork servers such as gunicorn)


def in_child(work):
    """Run *work()* in a forked child; return what it returned (a str)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        code = 0
        try:
            os.close(read)
            os.write(write, work().encode())
        except BaseException as exc:
            os.write(write, ("error: %r" % exc).encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    while True:
        chunk = os.read(read, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# Forking with the sampler and listener threads running is the point: a
# pre-fork server does it (Python 3.12+ warns about it).
forks_with_threads = pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded"
)


@needs_fork
@forks_with_threads
def test_a_forked_worker_listens_on_a_port_of_its_own_from_its_first_request():
    app = LeakHuntMiddleware(leaky_app, report=True, interval=3600)
    try:
        parent_url = app.report_url

        def worker():
            before = app.report_url
            call(app, "/leak/1")  # the first request restarts it here
            after = app.report_url
            status, headers, _ = fetch(after + "snapshot")
            return json.dumps(
                [before, after, status, headers.get("Content-Disposition", "")]
            )

        before, after, status, disposition = json.loads(in_child(worker))
        assert before is None  # the parent's socket is not the child's
        assert after not in (None, parent_url) and status == 200
        assert "pyleakhunt-" in disposition and "pyleakhunt-%d-" % os.getpid() not in (
            disposition
        )
        # The child closed its copy of the parent's socket: the parent serves on.
        status, headers, _ = fetch(parent_url + "snapshot")
        assert status == 200
        assert "pyleakhunt-%d-" % os.getpid() in headers["Content-Disposition"]
    finally:
        app.close()


@needs_fork
@forks_with_threads
def test_a_forked_worker_says_why_it_cannot_take_a_fixed_port(caplog):
    port = free_port()
    app = LeakHuntMiddleware(leaky_app, report=True, report_port=port, interval=3600)
    try:

        def worker():
            with caplog.at_level(logging.WARNING, logger="pyleakhunt"):
                call(app, "/leak/1")
            return " ".join(r.getMessage() for r in caplog.records)

        message = in_child(worker)
        assert "cannot listen on 127.0.0.1:%d" % port in message
        assert "Process %d, from which this one was forked" % os.getpid() in message
        assert "report_port=0" in message
        assert fetch(app.report_url)[0] == 200  # the parent's still serves
    finally:
        app.close()


# --------------------------------------------------------------------------
# The report page: what it answers


@pytest.mark.parametrize(
    "method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"]
)
def test_the_report_only_answers_get_and_head(reported, method):
    status, headers, _ = call(reported, "/_leakhunt/api", method=method, headers=AUTH)
    assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_head_answers_headers_without_a_body(reported):
    head = call(reported, "/_leakhunt/api", method="HEAD", headers=AUTH)
    assert head[0] == 200 and head[2] == b""
    assert int(head[1]["Content-Length"]) > 100  # that of the GET


@pytest.mark.parametrize(
    "path, status",
    [
        ("/_leakhunt/api/more", 404),
        ("/_leakhunt/../etc/passwd", 404),
        ("/_leakhunt/%2e%2e/", 404),
        ("/_leakhunt/\x00", 404),
        ("/_leakhunt//api", 404),
        ("/_leakhunt/" + "a" * 5000, 414),
    ],
)
def test_unknown_report_pages_are_404(reported, path, status):
    got, headers, body = call(reported, path, headers=AUTH)
    assert got == status and b"Traceback" not in body


def test_paths_that_only_start_like_the_prefix_go_to_the_app(reported):
    assert call(reported, "/_leakhuntx", headers=AUTH)[2] == b"ok"
    assert call(reported, "/_leakhunt", headers=AUTH)[0] == 200  # the page


def test_a_failing_report_answers_503_without_a_traceback(reported, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(attribution.current(), "report", broken)
    for page in ("/_leakhunt/", "/_leakhunt/api"):
        status, _, body = call(reported, page, headers=AUTH)
        assert status == 503 and b"secret" not in body and b"Traceback" not in body


def test_the_report_prefix_must_be_a_plain_path():
    for prefix in ("", "/", "/has space", "/a?b", "/<x>"):
        with pytest.raises(ValueError):
            ReportPage(prefix, TOKEN)
        with pytest.raises(ValueError):
            LoopbackPage(prefix)
    assert ReportPage("/debug/memory/", TOKEN).prefix == "/debug/memory"


def page_data(html):
    """The data the page's script draws: the JSON embedded in the page."""
    text = html.decode()
    start = text.index('<script type="application/json" id="plh-data">')
    start = text.index(">", start) + 1
    return json.loads(text[start : text.index("</script>", start)])


def sections(data, kind):
    return [section for section in data["sections"] if section["type"] == kind]


def test_responses_carry_protective_headers(reported):
    _, headers, html = call(reported, "/_leakhunt/", headers=AUTH)
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Type"].startswith("text/html")
    # The page's own policy, sent as a header too: no fetch of any kind,
    # only its own inline script (by hash) runs.
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'none'" in policy
    assert "script-src 'sha256-" in policy and "unsafe-inline" not in policy
    assert policy.replace("'", "&#x27;") in html.decode() or policy in html.decode()


def test_the_page_charts_retained_bytes_against_requests_one_line_an_endpoint():
    app = LeakHuntMiddleware(leaky_app, report_token=TOKEN, interval=3600)
    hunt = attribution.current()
    for round_ in range(6):
        for i in range(10):
            call(app, "/leak/%d" % (round_ * 10 + i))
            call(app, "/clean/%d" % i)
        hunt.sample()
    data = page_data(call(app, "/_leakhunt/", headers=AUTH)[2])
    [chart] = sections(data, "chart")
    assert chart["x_kind"] == "count" and chart["x_label"] == "requests served"
    lines = {series["name"]: series["points"] for series in chart["series"]}
    assert set(lines) == {"GET /leak/<id>", "GET /clean/<id>"}
    leak = lines["GET /leak/<id>"]
    assert [x for x, _ in leak] == [10, 20, 30, 40, 50, 60]
    assert all(b - a >= 9000 for (_, a), (_, b) in zip(leak, leak[1:]))
    assert lines["GET /clean/<id>"][-1][1] < 5000
    verdicts = sections(data, "notes")[0]["notes"]
    assert any(v.startswith("GET /leak/<id>: LEAKING") for v in verdicts)


def frame_location(data, frame):
    """(file, line) of an entry of the page's frame table."""
    name = frame[0]
    if isinstance(name, int):  # an index into the page's table of files
        name = data["files"][name][0]
    return name, frame[1]


def flame_frames(data, tree):
    """Every (file, line) of a flame graph's tree."""
    found = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if node[0] >= 0:
            found.add(frame_location(data, data["frames"][node[0]]))
        stack.extend(node[3])
    return found


def test_each_endpoint_has_a_flame_graph_of_what_it_retains(reported):
    call(reported, "/clean/1")
    attribution.current().sample()
    data = page_data(call(reported, "/_leakhunt/", headers=AUTH)[2])
    flames = {f["title"]: f for f in sections(data, "flame")}
    leak = next(f for t, f in flames.items() if "GET /leak/<id>" in t)
    line = leaky_app.__code__.co_firstlineno + 5
    assert (__file__, line) in flame_frames(data, leak["tree"])
    assert leak["tree"][1] >= 3000  # the root: every byte it retains
    clean = next(f for t, f in flames.items() if "GET /clean/<id>" in t)
    assert (__file__, line) not in flame_frames(data, clean["tree"])


def test_the_page_shows_locations_not_source_code(reported):
    _, _, html = call(reported, "/_leakhunt/", headers=AUTH)
    text = html.decode()
    data = page_data(html)
    line = leaky_app.__code__.co_firstlineno + 5
    frame = next(
        f for f in data["frames"] if frame_location(data, f) == (__file__, line)
    )
    assert any(isinstance(v, str) and v.endswith("leaky_app") for v in frame)
    assert "LEAKED.append" not in text  # the source line itself
    assert "HOME" not in text and "PATH_INFO" not in text


def test_endpoint_names_are_text_in_html_never_markup():
    hostile = "</script><img src=x onerror=alert(1)>"
    app = LeakHuntMiddleware(
        leaky_app, report_token=TOKEN, interval=3600, key=lambda e: hostile
    )
    call(app, "/leak/1")
    attribution.current().sample()
    _, _, html = call(app, "/_leakhunt/", headers=AUTH)
    assert hostile.encode() not in html and b"<img" not in html
    assert html.count(b"</script>") == 2  # the page's own two elements
    assert page_data(html)["sections"][0]["series"][0]["name"] == hostile


def test_estimates_are_labelled_in_html_and_json():
    app = LeakHuntMiddleware(
        leaky_app, report_token=TOKEN, interval=3600, sample_bytes=2048
    )
    for i in range(20):
        call(app, "/leak/%d" % i)
    assert json.loads(call(app, "/_leakhunt/api", headers=AUTH)[2])["estimated"] is True
    assert b"Estimates" in call(app, "/_leakhunt/", headers=AUTH)[2]


def test_the_snapshot_download_is_a_snapshot_file_with_endpoint_names(
    reported, tmp_path
):
    status, headers, body = call(reported, "/_leakhunt/snapshot", headers=AUTH)
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["Content-Disposition"].startswith(
        'attachment; filename="pyleakhunt-'
    )
    path = tmp_path / "s.plh"
    path.write_bytes(body)
    raw = read_snapshot(str(path))
    assert raw.block_sites is None  # aggregated
    assert "GET /leak/<id>" in raw.tags.values()
    tag = next(t for t, name in raw.tags.items() if name == "GET /leak/<id>")
    assert sum(s.size for s in raw.sites if s.tag == tag) >= 3000


# --------------------------------------------------------------------------
# A real server, concurrent clients


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 64


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def serve_in_thread(app):
    server = make_server("127.0.0.1", 0, app, _ThreadingServer, _QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, "http://127.0.0.1:%d" % server.server_port


def hit_concurrently(base, paths, clients=8):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    pending = list(paths)
    lock = threading.Lock()
    errors = []

    def client():
        while True:
            with lock:
                if not pending:
                    return
                path = pending.pop()
            try:
                with opener.open(base + path, timeout=10) as response:
                    response.read()
            except OSError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]


def test_concurrent_requests_are_attributed_to_their_own_endpoint():
    app = LeakHuntMiddleware(leaky_app, report=True, interval=3600)
    server, base = serve_in_thread(app)
    hunt = attribution.current()
    try:
        for _ in range(8):
            # Leaking and clean requests interleaved on the same threads.
            paths = []
            for i in range(30):
                paths += ["/leak/%d" % i, "/clean/%d" % i]
            hit_concurrently(base, paths)
            hunt.sample()
        status, _, body = fetch(app.report_url + "api")
        assert status == 200
        doc = json.loads(body)
    finally:
        server.shutdown()
        server.server_close()
        app.close()
    found = {e["endpoint"]: e for e in doc["endpoints"]}
    leak, clean = found["GET /leak/<id>"], found["GET /clean/<id>"]
    assert leak["requests"] == clean["requests"] == 240
    assert leak["leaking"] is True and leak["verdict"] == "leaking"
    assert 1000 <= leak["bytes_per_request"] <= 1300
    assert leak["retained_bytes"] >= 240 * 1000
    assert clean["leaking"] is False
    assert clean["retained_bytes"] < 20_000
    assert leak["sites"][0]["filename"] == __file__
