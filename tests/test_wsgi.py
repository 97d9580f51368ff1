"""The WSGI middleware: endpoint names, tags, the response body, the report page."""

import hmac
import io
import json
import socketserver
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.util import FileWrapper, setup_testing_defaults

import pytest

from pyleakhunt import attribution
from pyleakhunt.attribution import TAG_VAR
from pyleakhunt.fileformat import read_snapshot
from pyleakhunt.wsgi import LeakHuntMiddleware, ReportPage, endpoint_key, is_loopback

LEAKED = []
TOKEN = "s3cret-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def fresh_attribution():
    attribution.reset()
    LEAKED.clear()
    yield
    attribution.reset()
    LEAKED.clear()


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


@pytest.fixture
def reported():
    """An app with the report on; three requests served and sampled."""
    app = LeakHuntMiddleware(leaky_app, report=True, interval=3600)
    for i in range(3):
        call(app, "/leak/%d" % i)
    attribution.current().sample()
    return app


def test_the_report_is_off_unless_enabled():
    app = LeakHuntMiddleware(leaky_app, interval=3600)
    status, _, body = call(app, "/_leakhunt/api")
    assert (status, body) == (200, b"ok")  # the app's own answer


def test_the_report_answers_loopback_clients(reported):
    for address in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        status, headers, body = call(reported, "/_leakhunt/api", remote=address)
        assert status == 200, address
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body)["endpoints"][0]["endpoint"] == "GET /leak/<id>"


@pytest.mark.parametrize(
    "address",
    ["10.0.0.1", "192.168.1.5", "2001:db8::1", "", None, "localhost", "127.0.0.1.evil"],
)
def test_the_report_refuses_other_clients_without_a_token(reported, address):
    status, _, body = call(reported, "/_leakhunt/", remote=address)
    assert status == 403
    assert b"loopback" in body and b"retained" not in body


@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Real-IP"])
def test_the_report_refuses_proxied_requests_without_a_token(reported, header):
    status, _, body = call(reported, "/_leakhunt/api", headers={header: "203.0.113.9"})
    assert status == 403 and b"proxy" in body


@pytest.fixture
def with_token():
    app = LeakHuntMiddleware(leaky_app, report=True, report_token=TOKEN, interval=3600)
    call(app, "/leak/1")
    return app


def test_with_a_token_only_requests_carrying_it_are_answered(with_token):
    remote = "203.0.113.9"
    for headers in (
        {"Authorization": "Bearer " + TOKEN},
        {"Authorization": "bearer   " + TOKEN},
        {"X-LeakHunt-Token": TOKEN},
    ):
        assert (
            call(with_token, "/_leakhunt/api", remote=remote, headers=headers)[0] == 200
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
            with_token, "/_leakhunt/api", remote=remote, headers=headers
        )
        assert status == 401, headers
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
    # A token configured means loopback alone is not enough either.
    assert call(with_token, "/_leakhunt/api", remote="127.0.0.1")[0] == 401


def test_the_token_is_never_accepted_in_the_url(with_token):
    for query in (
        "token=" + TOKEN,
        "access_token=" + TOKEN,
        "X-LeakHunt-Token=" + TOKEN,
    ):
        status, _, body = call(with_token, "/_leakhunt/api", query=query)
        assert status == 401 and b"never in the URL" in body


def test_tokens_are_compared_in_constant_time(with_token, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    call(
        with_token, "/_leakhunt/api", headers={"X-LeakHunt-Token": "wrong-token-value"}
    )
    assert calls == [(b"wrong-token-value", TOKEN.encode())]


def test_weak_or_odd_tokens_are_refused_at_start():
    for token in ("short", "has a space in it!!", "x" * 600, "caf\u00e9" * 5):
        with pytest.raises(ValueError, match="token"):
            LeakHuntMiddleware(leaky_app, report=True, report_token=token)


def test_the_token_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("PYLEAKHUNT_REPORT_TOKEN", TOKEN)
    app = LeakHuntMiddleware(leaky_app, report=True, interval=3600)
    assert call(app, "/_leakhunt/api", remote="203.0.113.9")[0] == 401
    headers = {"X-LeakHunt-Token": TOKEN}
    assert call(app, "/_leakhunt/api", remote="203.0.113.9", headers=headers)[0] == 200


def test_a_huge_token_header_gets_a_clean_4xx(with_token):
    status, _, _ = call(
        with_token, "/_leakhunt/api", headers={"X-LeakHunt-Token": "x" * 100_000}
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
# The report page: what it answers


@pytest.mark.parametrize(
    "method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"]
)
def test_the_report_only_answers_get_and_head(reported, method):
    status, headers, _ = call(reported, "/_leakhunt/api", method=method)
    assert status == 405 and headers["Allow"] == "GET, HEAD"


def test_head_answers_headers_without_a_body(reported):
    head = call(reported, "/_leakhunt/api", method="HEAD")
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
    got, headers, body = call(reported, path)
    assert got == status and b"Traceback" not in body


def test_paths_that_only_start_like_the_prefix_go_to_the_app(reported):
    assert call(reported, "/_leakhuntx")[2] == b"ok"
    assert call(reported, "/_leakhunt")[0] == 200  # the page itself


def test_a_failing_report_answers_503_without_a_traceback(reported, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(attribution.current(), "report", broken)
    for page in ("/_leakhunt/", "/_leakhunt/api"):
        status, _, body = call(reported, page)
        assert status == 503 and b"secret" not in body and b"Traceback" not in body


def test_the_report_prefix_must_be_a_plain_path():
    for prefix in ("", "/", "/has space", "/a?b", "/<x>"):
        with pytest.raises(ValueError):
            ReportPage(prefix)
    assert ReportPage("/debug/memory/").prefix == "/debug/memory"


def test_responses_carry_protective_headers(reported):
    _, headers, _ = call(reported, "/_leakhunt/")
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert headers["Content-Type"].startswith("text/html")


def test_the_page_shows_locations_not_source_code(reported):
    _, _, html = call(reported, "/_leakhunt/")
    text = html.decode()
    line = leaky_app.__code__.co_firstlineno + 5
    assert "%s:%d" % (__file__, line) in text
    assert "LEAKED.append" not in text  # the source line itself
    assert "HOME" not in text and "PATH_INFO" not in text


def test_endpoint_names_are_escaped_in_html():
    app = LeakHuntMiddleware(
        leaky_app, report=True, interval=3600, key=lambda e: "<script>x</script>"
    )
    call(app, "/leak/1")
    _, _, html = call(app, "/_leakhunt/")
    assert b"<script>" not in html and b"&lt;script&gt;" in html


def test_estimates_are_labelled_in_html_and_json():
    app = LeakHuntMiddleware(leaky_app, report=True, interval=3600, sample_bytes=2048)
    for i in range(20):
        call(app, "/leak/%d" % i)
    assert json.loads(call(app, "/_leakhunt/api")[2])["estimated"] is True
    assert b"Estimates" in call(app, "/_leakhunt/")[2]


def test_the_snapshot_download_is_a_snapshot_file_with_endpoint_names(
    reported, tmp_path
):
    status, headers, body = call(reported, "/_leakhunt/snapshot")
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
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(base + "/_leakhunt/api", timeout=10) as response:
            doc = json.load(response)
    finally:
        server.shutdown()
        server.server_close()
    found = {e["endpoint"]: e for e in doc["endpoints"]}
    leak, clean = found["GET /leak/<id>"], found["GET /clean/<id>"]
    assert leak["requests"] == clean["requests"] == 240
    assert leak["leaking"] is True and leak["verdict"] == "leaking"
    assert 1000 <= leak["bytes_per_request"] <= 1300
    assert leak["retained_bytes"] >= 240 * 1000
    assert clean["leaking"] is False
    assert clean["retained_bytes"] < 20_000
    assert leak["sites"][0]["filename"] == __file__
