"""The middleware core the WSGI, ASGI and Flask adapters share.

`MiddlewareCore` holds what does not depend on the protocol: the report
options (checked by `report_setup`, the listener started), the process's
one `Attribution`, and the cache of endpoint names.  An adapter adds its
``__call__``: how it reads a request's method and path, and how it serves
the report page.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from . import attribution
from .naming import endpoint_key
from .page import ReportListener, ReportPage, report_setup

__all__ = ["MiddlewareCore"]

#: Endpoint names cached per (method, path); ids in paths would grow the
#: cache without bound, so it is emptied when it reaches this size.
NAME_CACHE_SIZE = 4096


class MiddlewareCore:
    """The report page, the attribution and endpoint naming of a middleware.

    ``MiddlewareCore(app, report=False, report_prefix=None,
    report_token=None, report_port=None, key=None, **options)``; see
    `pyleakhunt.web.wsgi.LeakHuntMiddleware` for the options.
    """

    def __init__(
        self,
        app: Any,
        *,
        report: bool = False,
        report_prefix: Optional[str] = None,
        report_token: Optional[str] = None,
        report_port: Optional[int] = None,
        key: Optional[Any] = None,
        **options: Any,
    ) -> None:
        self.app = app
        self._key = key
        self._names: Dict[Tuple[str, str], str] = {}
        #: The page served through the application (with a token only).
        self.page: Optional[ReportPage]
        #: The loopback listener (without a token, or with *report_port*).
        self.listener: Optional[ReportListener]
        self.page, self.listener = report_setup(
            report, report_prefix, report_token, report_port
        )
        self.attribution = attribution.shared(**options)
        if self.listener is not None:
            self.listener.start()

    @property
    def report_url(self) -> Optional[str]:
        """The loopback listener's URL, or None when it does not listen."""
        return None if self.listener is None else self.listener.url

    def close(self) -> None:
        """Stop the report listener, if any (the attribution goes on)."""
        if self.listener is not None:
            self.listener.close()

    def name(self, method: str, path: str) -> str:
        """`endpoint_key` of *method* and *path*, cached."""
        cache_key = (method, path)
        name = self._names.get(cache_key)
        if name is None:
            name = endpoint_key(method, path)
            if len(self._names) >= NAME_CACHE_SIZE:
                self._names.clear()
            self._names[cache_key] = name
        return name
