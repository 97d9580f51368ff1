"""Which endpoint leaks? WSGI middleware with per-request attribution.

::

    from pyleakhunt.wsgi import LeakHuntMiddleware

    app = LeakHuntMiddleware(app, report=True)

Every request is counted under its endpoint: the method and the path with
id-like segments folded (``GET /users/<id>/orders``, `pyleakhunt.web.naming`),
and while it is served, every allocation is tagged with that endpoint
(`pyleakhunt.web.attribution`).  A background thread samples what each
endpoint still retains, and judges it with the project's sustained-growth
rule.  With ``report=True`` the figures are served at ``/_leakhunt/``
(HTML), ``/_leakhunt/api`` (JSON) and ``/_leakhunt/snapshot`` (a snapshot
file for ``pyleakhunt top``): without a token on a port of their own bound
to 127.0.0.1 (`ReportListener`), never on the application's; with a
token, through the application too (`ReportPage`, `pyleakhunt.web.page`).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

from .attribution import TAG_VAR, untag
from .core import MiddlewareCore
from .naming import endpoint_key
from .page import LoopbackPage, ReportListener, ReportPage, is_loopback

__all__ = [
    "LeakHuntMiddleware",
    "LoopbackPage",
    "ReportListener",
    "ReportPage",
    "endpoint_key",
    "is_loopback",
    "tagged_body",
]

StartResponse = Callable[..., Any]
WSGIApp = Callable[[Dict[str, Any], StartResponse], Iterable[bytes]]


class _TaggedBody:
    """A response body that sets the endpoint's tag while it is iterated.

    The server consumes the body after the application returned, possibly
    (in some servers) in another context or thread; a generator allocates
    then.  So the tag is set around each step and around ``close()``
    rather than left set from the call until ``close()``, which would
    also tag the server's own work, or fail to reset in another context.
    """

    __slots__ = ("_body", "_iterator", "_tag")

    def __init__(self, body: Iterable[bytes], tag: int) -> None:
        self._body = body
        self._iterator: Optional[Iterator[bytes]] = None
        self._tag = tag

    def __iter__(self) -> _TaggedBody:
        return self

    def __next__(self) -> bytes:
        token = TAG_VAR.set(self._tag)
        try:
            iterator = self._iterator
            if iterator is None:
                iterator = self._iterator = iter(self._body)
            return next(iterator)
        finally:
            untag(token)

    def close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            token = TAG_VAR.set(self._tag)
            try:
                close()
            finally:
                untag(token)


class _SizedTaggedBody(_TaggedBody):
    """A tagged body whose length servers may ask for (one chunk: a
    Content-Length header)."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._body)  # type: ignore[arg-type]


def tagged_body(
    body: Iterable[bytes], tag: int, environ: Dict[str, Any]
) -> Iterable[bytes]:
    """*body*, wrapped to be iterated under *tag* unless nothing can
    allocate while it is (a list or tuple) or the server should see it as
    it is (its ``wsgi.file_wrapper``, which it may send with sendfile)."""
    if not tag or isinstance(body, (list, tuple)):
        return body
    file_wrapper = environ.get("wsgi.file_wrapper")
    if isinstance(file_wrapper, type) and isinstance(body, file_wrapper):
        return body
    if hasattr(body, "__len__"):
        return _SizedTaggedBody(body, tag)
    return _TaggedBody(body, tag)


class LeakHuntMiddleware(MiddlewareCore):
    """Count and tag every request of a WSGI app by endpoint.

    ``LeakHuntMiddleware(app, report=False, report_prefix=None,
    report_token=None, report_port=None, key=None, **options)``.

    - *report*: serve the report page (off by default; giving any other
      ``report_*`` option also turns it on).  Without a token, it is served
      only on a port of its own bound to 127.0.0.1 (`ReportListener`),
      never through the application: ``report_url`` says where, and the
      URL is logged.
    - *report_port*: that port (default 0: any free port, logged).
    - *report_prefix*: the page's path (default ``/_leakhunt``).
    - *report_token*: serve the page through the application at
      *report_prefix*, to requests that carry this token only, from any
      address (`ReportPage`); the loopback listener then runs only if
      *report_port* is given.  Defaults to the ``PYLEAKHUNT_REPORT_TOKEN``
      environment variable (which alone does not turn the page on).
    - *key*: ``key(environ) -> str`` names the endpoint of a request;
      default `endpoint_key` of the method and ``PATH_INFO``.
    - *options*: `pyleakhunt.attribution.Options` (``nframe=1``,
      ``interval=2.0``, ``sample_bytes=None``, ``max_endpoints=100``,
      ...), shared by the whole process.

    Tracing starts (with *nframe* frames) if it is not on already.
    `close` stops the listener.
    """

    app: WSGIApp

    def endpoint(self, environ: Dict[str, Any]) -> str:
        """The endpoint name of a request."""
        if self._key is not None:
            return self._key(environ)
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "") or "/"
        # The cache looked up inline: a call less on nearly every request.
        return self._names.get((method, path)) or self.name(method, path)

    def __call__(
        self, environ: Dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        page = self.page
        # The prefix test inline: it rules out nearly every request, no call.
        if page is not None and environ.get("PATH_INFO", "").startswith(page.prefix):
            if (served := self.serve_report(environ, start_response)) is not None:
                return served
        tag = self.attribution.enter(self.endpoint(environ))
        token = TAG_VAR.set(tag)
        try:
            body = self.app(environ, start_response)
        finally:
            untag(token)
        return tagged_body(body, tag, environ)

    def serve_report(
        self, environ: Dict[str, Any], start_response: StartResponse
    ) -> Optional[List[bytes]]:
        """The report page's response when *environ* asks for it, else None."""
        page = self.page
        if page is None:
            return None
        path = environ.get("PATH_INFO", "")
        if not (path.startswith(page.prefix) and page.matches(path)):
            return None

        def header(name: str) -> Optional[str]:
            return environ.get("HTTP_" + name.upper().replace("-", "_"))

        response = page.respond(
            environ.get("REQUEST_METHOD", ""),
            path,
            header,
            environ.get("REMOTE_ADDR"),
            environ.get("SCRIPT_NAME", ""),
        )
        start_response(response.status_line, response.headers)
        return [response.body]
