"""Which endpoint leaks? A Flask extension with per-request attribution.

::

    from pyleakhunt.flask import LeakHunt

    LeakHunt(app, report=True)        # or: hunt = LeakHunt(); hunt.init_app(app)

Like `pyleakhunt.wsgi.LeakHuntMiddleware`, but endpoints are Flask's URL
rules (``GET /app_metric/<app>``), so their number is the number of routes.
A rule is known only once Flask has matched the URL, so the extension wraps
``app.wsgi_app`` (which keeps the tag for the response body and serves the
report page) and sets the tag as Flask starts preprocessing the request,
before any URL value preprocessor, ``before_request`` function and the view.
What Flask allocates before that (the request context, URL matching) is
transient and left untagged.  Requests that match no rule are counted as
``<unmatched>``.

Flask is imported only when this module is.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional

from flask import Flask, Response, request

try:
    from flask.globals import _cv_request
except ImportError:  # Flask before 2.2
    _cv_request = None

from .attribution import TAG_VAR, untag
from .naming import KNOWN_METHODS
from .wsgi import LeakHuntMiddleware, StartResponse, tagged_body

__all__ = ["UNMATCHED", "LeakHunt"]

#: The endpoint of requests that match no URL rule (404, 405).
UNMATCHED = "<unmatched>"

# What the middleware and the request's hooks tell each other, in the
# WSGI environ: the tag (0 until the URL rule is known), the token that
# undoes it, and whether the response is streamed.
_TAG = "pyleakhunt.tag"
_TOKEN = "pyleakhunt.token"
_STREAMED = "pyleakhunt.streamed"

Environ = Dict[str, Any]


class LeakHunt:
    """Flask extension: which endpoint retains the memory that stays.

    ``LeakHunt(app=None, **options)``; *options* are those of
    `pyleakhunt.wsgi.LeakHuntMiddleware` (``report=True``,
    ``report_port``, ``report_prefix``, ``report_token``, ``nframe``,
    ``interval``...).  Without a token, the report page is served on a
    loopback port of its own (``report_url``), never by the app.
    """

    def __init__(self, app: Optional[Flask] = None, **options: Any) -> None:
        if "key" in options:
            raise TypeError("LeakHunt names endpoints by URL rule; 'key' is not used")
        self.options = options
        self.middleware: Dict[str, LeakHuntMiddleware] = {}
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Wrap *app*'s WSGI callable and its request pre- and
        post-processing."""
        middleware = _FlaskMiddleware(app.wsgi_app, **self.options)
        app.wsgi_app = middleware  # type: ignore[method-assign]
        # Flask's own steps are wrapped, on this app only, rather than hooked
        # with a URL value preprocessor and an after_request function: for
        # those Flask evaluates request.endpoint and request.view_args, or
        # checks for a coroutine, on every request.
        preprocess_request = app.preprocess_request
        process_response = app.process_response

        def tagging_preprocess_request() -> Any:
            # First: URL value preprocessors, before_request functions and
            # the view all run under the endpoint's tag.
            middleware.tag_request()
            return preprocess_request()

        def noting_process_response(response: Response) -> Response:
            response = process_response(response)
            if response.is_streamed:  # its body allocates while it is sent
                _current_request().environ[_STREAMED] = True
            return response

        app.preprocess_request = tagging_preprocess_request  # type: ignore[method-assign]
        app.process_response = noting_process_response  # type: ignore[method-assign]
        app.extensions["pyleakhunt"] = self
        self.middleware[app.name] = middleware

    @property
    def report_url(self) -> Optional[str]:
        """Where the loopback listener serves the report page, or None.

        With several apps, that of the last one initialised; each app's
        is ``hunt.middleware[app.name].report_url``.
        """
        for middleware in reversed(list(self.middleware.values())):
            return middleware.report_url
        return None

    def close(self) -> None:
        """Stop the report listeners of every app (the attribution goes on)."""
        for middleware in self.middleware.values():
            middleware.close()


class _FlaskMiddleware(LeakHuntMiddleware):
    """The WSGI middleware, with the endpoint chosen after URL matching.

    `tag_request` counts the request and sets the tag; the middleware
    resets it when the app returns.  The response body is wrapped to keep
    the tag only when it is streamed: a finished Flask response allocates
    nothing while it is sent.
    """

    def __call__(self, environ: Environ, respond: StartResponse) -> Iterable[bytes]:
        page = self.page
        # The prefix test inline: it rules out nearly every request, no call.
        if page is not None and environ.get("PATH_INFO", "").startswith(page.prefix):
            if (served := self.serve_report(environ, respond)) is not None:
                return served
        environ[_TAG] = 0  # tag_request counts only requests that pass here
        try:
            body = self.app(environ, respond)
        finally:
            token = environ.pop(_TOKEN, None)
            if token is not None:
                untag(token)
        if environ.get(_STREAMED):
            return tagged_body(body, environ[_TAG], environ)
        return body

    def tag_request(self) -> None:
        """Count the request under its URL rule and tag what follows with it.

        Only requests that came through the middleware (which resets the tag
        when the app returns) are tagged: a test that calls
        ``app.preprocess_request()`` directly must not leave a tag behind.
        """
        current = _current_request()
        environ = current.environ
        if environ.get(_TAG) != 0:
            return
        rule = current.url_rule
        if rule is None:
            name = UNMATCHED
        else:
            method = environ.get("REQUEST_METHOD", "GET").upper()
            key = (method, rule.rule)
            name = self._names.get(key)  # type: ignore[assignment]
            if name is None:
                if method in KNOWN_METHODS:  # bounded: methods x rules
                    name = self._names[key] = f"{method} {rule.rule}"
                else:
                    name = f"OTHER {rule.rule}"
        tag = self.attribution.enter(name)
        environ[_TAG] = tag
        environ[_TOKEN] = TAG_VAR.set(tag)


def _current_request() -> Any:
    """The request being served: through Flask's context variable when it
    has one (Flask 2.2 and later), which costs one call where the
    ``request`` proxy costs several."""
    if _cv_request is not None:
        return _cv_request.get().request
    return request._get_current_object()
