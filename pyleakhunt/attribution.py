"""Documented path of `pyleakhunt.web.attribution` (endpoint registry, verdict)."""

from .web.attribution import *  # noqa: F403
from .web.attribution import __all__  # noqa: F401
