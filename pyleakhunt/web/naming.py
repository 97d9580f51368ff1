"""Endpoint names: the method and the path with id-like segments folded.

``endpoint_key("GET", "/users/42/orders")`` is ``"GET /users/<id>/orders"``:
numbers, UUIDs, long hex strings and token-like segments become ``<id>``,
unknown methods ``OTHER``, long paths are cut, so that a client that
invents paths cannot grow the endpoint registry.  The WSGI and ASGI
middleware name their requests with it; the Flask extension names them by
URL rule instead, with the same `KNOWN_METHODS`.
"""

from __future__ import annotations

import re

__all__ = [
    "ID",
    "KNOWN_METHODS",
    "MAX_PATH",
    "MAX_SEGMENTS",
    "endpoint_key",
    "fold_segment",
]


#: Methods kept by name; any other is counted as ``OTHER`` (a client can
#: send any token as a method).
KNOWN_METHODS = frozenset(
    ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "WS")
)
ID = "<id>"
#: Segments beyond this many are cut (``/...``), and paths are cut to
#: MAX_PATH characters: an endpoint name is a label, not a log of paths.
MAX_SEGMENTS = 8
MAX_PATH = 200

_NUMBER = re.compile(r"[0-9][0-9_.,:+-]*\Z")  # 42, 2024-05-01, 3.14, 1,000
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
    r"[0-9a-fA-F]{12}\Z"
)
_HEX = re.compile(r"(?=[a-fA-F]*[0-9])[0-9a-fA-F]{8,}\Z")  # with a digit
_TOKEN = re.compile(r"(?=.*[0-9])[A-Za-z0-9_.~=+-]{16,}\Z")  # with a digit
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def fold_segment(segment: str) -> str:
    """A path segment, or ``<id>`` when it looks like an identifier.

    Numbers (also dates and versions), UUIDs, hex ids of 8 digits or more,
    long tokens that contain a digit, and segments over 64 characters are
    identifiers.  Words are kept: ``users``, ``v2``, ``app_metric``.
    """
    if not segment:
        return segment
    if (
        len(segment) > 64
        or _NUMBER.match(segment)
        or _UUID.match(segment)
        or _HEX.match(segment)
        or _TOKEN.match(segment)
    ):
        return ID
    return _UNPRINTABLE.sub("?", segment)


def endpoint_key(method: str, path: str) -> str:
    """The endpoint name of a request: ``"GET /users/<id>/orders"``.

    The cardinality stays bounded whatever clients send: id-like segments
    fold to ``<id>``, unknown methods to ``OTHER``, long paths are cut.
    """
    method = method.upper()
    if method not in KNOWN_METHODS:
        method = "OTHER"
    segments = path.split("/")
    if len(segments) > MAX_SEGMENTS + 1:
        segments = segments[: MAX_SEGMENTS + 1] + ["..."]
    folded = "/".join(fold_segment(s) for s in segments)
    if len(folded) > MAX_PATH:
        folded = folded[: MAX_PATH - 3] + "..."
    if not folded.startswith("/"):
        folded = "/" + folded
    return f"{method} {folded}"
