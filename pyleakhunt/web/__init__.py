"""The web integrations: which endpoint of a web application leaks.

- `attribution`: the endpoint registry (tags, request counts) and the
  verdict (what each endpoint retains, judged per request served).
- `naming`: endpoint names (method and folded path).
- `page`: the report page and who may read it (token, loopback listener).
- `core`: what every middleware shares (`MiddlewareCore`).
- `wsgi`, `asgi`, `flask`: thin adapters, one per protocol.

The old paths ``pyleakhunt.wsgi``, ``pyleakhunt.asgi``,
``pyleakhunt.flask`` and ``pyleakhunt.attribution`` re-export these.
"""
