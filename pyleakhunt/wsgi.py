"""Documented path of `pyleakhunt.web.wsgi` (the WSGI middleware); the
report page's and endpoint naming's names it always held come along."""

from .web.naming import ID, KNOWN_METHODS, MAX_PATH, MAX_SEGMENTS, fold_segment  # noqa: F401
from .web.page import (  # noqa: F401
    DEFAULT_REPORT_PREFIX,
    FLAME_ENDPOINTS,
    MAX_REPORT_PATH,
    MAX_TOKEN_HEADER,
    PROXY_HEADERS,
    TOKEN_ENV,
    Response,
    html_policy,
    render_html,
    report_setup,
)
from .web.wsgi import *  # noqa: F403
from .web.wsgi import StartResponse, WSGIApp, __all__  # noqa: F401
