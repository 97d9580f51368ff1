"""The ASGI middleware: interleaved requests on one thread, the report page."""

import asyncio
import json
import urllib.request

import pytest
from helpers import fresh_web_state

from pyleakhunt import attribution
from pyleakhunt.asgi import LeakHuntMiddleware
from pyleakhunt.attribution import TAG_VAR

LEAKED = []
TOKEN = "asgi-token-0123456789abcdef"


@pytest.fixture(autouse=True)
def fresh_attribution():
    with fresh_web_state(LEAKED):
        yield


async def app(scope, receive, send):
    """A minimal ASGI app: /leak/* keeps 100 bytes per step, the rest keeps
    nothing; both yield to the event loop between steps, so concurrent
    requests interleave on the one thread."""
    if scope["type"] == "lifespan":
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        return
    kept = LEAKED if scope["path"].startswith("/leak") else []
    for _ in range(10):
        kept.append(bytearray(100))
        await asyncio.sleep(0)
    if scope["path"].startswith("/boom"):
        raise RuntimeError("boom")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def request(asgi, path, method="GET", client=("127.0.0.1", 5000), headers=()):
    """Send one HTTP request; return (status, headers, body)."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": client,
    }
    await asgi(scope, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


def endpoints():
    return {e.endpoint: e for e in attribution.current().report(refresh=0).endpoints}


def test_interleaved_requests_are_attributed_to_their_own_endpoint():
    asgi = LeakHuntMiddleware(app, interval=3600)
    hunt = attribution.current()

    async def main():
        for _ in range(6):
            paths = ["/leak/%d" % i for i in range(20)]
            paths += ["/clean/%d" % i for i in range(20)]
            await asyncio.gather(*(request(asgi, p) for p in paths))
            hunt.sample()

    asyncio.run(main())
    found = endpoints()
    leak, clean = found["GET /leak/<id>"], found["GET /clean/<id>"]
    assert leak.requests == clean.requests == 120
    assert leak.leaking and not clean.leaking
    # Ten bytearrays of 100 bytes: 10 x (56-byte object + 101-byte buffer);
    # on 3.15 the buffer is a bytes object of its own (about 206 bytes each).
    assert 1500 <= leak.bytes_per_request <= 2300
    assert clean.retained_bytes < 20_000  # asyncio's own, not the app's
    assert TAG_VAR.get() == 0


def test_tasks_a_request_starts_inherit_its_tag():
    seen = []

    async def spawning(scope, receive, send):
        async def background():
            seen.append(TAG_VAR.get())

        await asyncio.create_task(background())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    asgi = LeakHuntMiddleware(spawning, interval=3600)
    asyncio.run(request(asgi, "/spawn"))
    assert seen and seen[0] > 0


def test_the_tag_is_reset_when_the_app_raises():
    asgi = LeakHuntMiddleware(app, interval=3600)

    async def main():
        with pytest.raises(RuntimeError):
            await request(asgi, "/boom")
        return TAG_VAR.get()

    assert asyncio.run(main()) == 0


def test_lifespan_events_pass_through_uncounted():
    asgi = LeakHuntMiddleware(app, interval=3600)
    sent = []

    async def main():
        async def receive():
            return {"type": "lifespan.startup"}

        async def send(message):
            sent.append(message)

        await asgi({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    asyncio.run(main())
    assert sent == [{"type": "lifespan.startup.complete"}]
    assert attribution.current().registry.names() == {}


def test_websockets_count_as_ws_endpoints():
    async def ws_app(scope, receive, send):
        await send({"type": "websocket.close"})

    asgi = LeakHuntMiddleware(ws_app, interval=3600)

    async def main():
        async def receive():
            return {"type": "websocket.connect"}

        async def send(message):
            pass

        await asgi({"type": "websocket", "path": "/ws/42"}, receive, send)

    asyncio.run(main())
    assert list(attribution.current().registry.names().values()) == ["WS /ws/<id>"]


def fetch_json(url):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return json.load(response)


def test_without_a_token_the_page_is_on_the_loopback_listener_only():
    asgi = LeakHuntMiddleware(app, report=True, interval=3600)
    try:

        async def main():
            await request(asgi, "/leak/1")
            return [
                await request(asgi, path)
                for path in ("/_leakhunt/api", "/_leakhunt/", "/_leakhunt/snapshot")
            ]

        for status, _, body in asyncio.run(main()):
            assert (status, body) == (200, b"ok")  # the app's own answer
        assert asgi.page is None
        doc = fetch_json(asgi.report_url + "api")
        assert doc["endpoints"][0]["endpoint"] == "GET /leak/<id>"
    finally:
        asgi.close()
    assert asgi.report_url is None


def test_the_report_token_over_asgi():
    asgi = LeakHuntMiddleware(app, report_token=TOKEN, interval=3600)
    remote = ("203.0.113.5", 1)
    auth = [("Authorization", "Bearer " + TOKEN)]

    async def main():
        await request(asgi, "/leak/1")
        without = await request(asgi, "/_leakhunt/api", client=remote)
        local = await request(asgi, "/_leakhunt/api")
        bearer = await request(asgi, "/_leakhunt/api", client=remote, headers=auth)
        post = await request(asgi, "/_leakhunt/api", method="POST", headers=auth)
        html = await request(asgi, "/_leakhunt/", headers=auth)
        missing = await request(asgi, "/_leakhunt/nope", headers=auth)
        return without, local, bearer, post, html, missing

    without, local, bearer, post, html, missing = asyncio.run(main())
    assert without[0] == 401 and local[0] == 401  # loopback alone is not enough
    assert bearer[0] == 200 and bearer[1][b"content-type"] == b"application/json"
    assert json.loads(bearer[2])["endpoints"][0]["endpoint"] == "GET /leak/<id>"
    assert post[0] == 405 and missing[0] == 404
    # The shared renderer: names are JSON data, written as text by its script.
    assert html[0] == 200 and b"GET /leak/\\u003cid\\u003e" in html[2]
    assert asgi.listener is None


@pytest.mark.filterwarnings("ignore:Using .*httpx")
def test_starlette_routes_behind_the_middleware():
    starlette = pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    def items(request):  # a sync endpoint: Starlette runs it in a thread
        LEAKED.append(bytearray(1000))
        return PlainTextResponse("item %s" % request.path_params["item_id"])

    async def health(request):
        return PlainTextResponse("ok")

    routes = [Route("/items/{item_id}", items), Route("/health", health)]
    # 50 requests: on 3.10 to 3.12, /health is told from a leak only with
    # each small object and frame credited to its own request
    # (fresh_objects; 3.13+ does that by itself).
    asgi = LeakHuntMiddleware(
        Starlette(routes=routes), report=True, interval=3600, fresh_objects=True
    )
    hunt = attribution.current()
    with TestClient(asgi, client=("127.0.0.1", 123)) as client:
        for round_ in range(5):
            for i in range(10):
                assert client.get("/items/%d" % (round_ * 10 + i)).status_code == 200
                assert client.get("/health").text == "ok"
            hunt.sample()
        assert client.get("/_leakhunt/api").status_code == 404  # Starlette's
    doc = fetch_json(asgi.report_url + "api")
    asgi.close()
    found = {e["endpoint"]: e for e in doc["endpoints"]}
    assert starlette.__version__
    assert found["GET /items/<id>"]["leaking"] is True
    assert found["GET /items/<id>"]["retained_bytes"] >= 50 * 1000
    assert found["GET /health"]["leaking"] is False
