"""Which endpoint leaks? ASGI middleware with per-request attribution.

::

    from pyleakhunt.asgi import LeakHuntMiddleware

    app = LeakHuntMiddleware(app, report=True)   # Starlette, FastAPI, ...

The same attribution as `pyleakhunt.wsgi` for ASGI applications, where many
requests interleave on one thread as asyncio tasks.  The tag lives in a
context variable, and each task runs in its own copy of the context, so a
tag set while one request's task runs is not seen by another's; tasks a
request starts inherit it.  Endpoints are the method and the path with
id-like segments folded (`pyleakhunt.wsgi.endpoint_key`): the middleware
runs before the application's router, so route templates are not known
yet.  WebSocket connections count as ``WS <path>``; lifespan events pass
through untagged.

The report page is served under the same rules as with WSGI: without a
token on a loopback port of its own, from a thread
(`pyleakhunt.wsgi.ReportListener`); with a token, through the application
too (`pyleakhunt.wsgi.ReportPage`), on the event loop: its snapshot takes
milliseconds.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, MutableMapping

from .attribution import TAG_VAR, untag
from .core import MiddlewareCore
from .page import ReportPage

__all__ = ["LeakHuntMiddleware"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Dict[str, Any]]]
Send = Callable[[Dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class LeakHuntMiddleware(MiddlewareCore):
    """Count and tag every HTTP request and WebSocket of an ASGI app.

    ``LeakHuntMiddleware(app, report=False, report_prefix=None,
    report_token=None, report_port=None, key=None, **options)``, as
    `pyleakhunt.wsgi.LeakHuntMiddleware`; *key* gets the ASGI scope.
    ``report_url`` is where the loopback listener serves the page; `close`
    stops it.
    """

    app: ASGIApp

    def endpoint(self, scope: Scope) -> str:
        """The endpoint name of a request or WebSocket connection."""
        if self._key is not None:
            return self._key(scope)
        method = scope.get("method", "GET") if scope["type"] == "http" else "WS"
        path = scope.get("path", "") or "/"
        return self._names.get((method, path)) or self.name(method, path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        page = self.page
        if kind == "http" and page is not None and page.matches(scope.get("path", "")):
            await _serve_report(page, scope, send)
            return
        tag = self.attribution.enter(self.endpoint(scope))
        # The task's own context: other requests' tasks never see this value.
        token = TAG_VAR.set(tag)
        try:
            await self.app(scope, receive, send)
        finally:
            untag(token)


async def _serve_report(page: ReportPage, scope: Scope, send: Send) -> None:
    headers: Dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        key = name.decode("latin-1").lower()
        # Repeated headers are joined, as a WSGI server would.
        text = value.decode("latin-1")
        headers[key] = headers[key] + "," + text if key in headers else text
    client = scope.get("client")
    response = page.respond(
        scope.get("method", ""),
        scope.get("path", ""),
        headers.get,
        client[0] if client else None,
        scope.get("root_path", ""),
    )
    await send(
        {
            "type": "http.response.start",
            "status": response.status,
            "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in response.headers
            ],
        }
    )
    await send({"type": "http.response.body", "body": response.body})
