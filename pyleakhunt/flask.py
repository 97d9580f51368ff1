"""Documented path of `pyleakhunt.web.flask` (the Flask extension)."""

from .web.flask import *  # noqa: F403
from .web.flask import __all__  # noqa: F401
