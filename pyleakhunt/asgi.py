"""Documented path of `pyleakhunt.web.asgi` (the ASGI middleware)."""

from .web.asgi import *  # noqa: F403
from .web.asgi import ASGIApp, Receive, Scope, Send, __all__  # noqa: F401
