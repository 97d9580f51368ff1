"""The census: what fills a core dump or a live process, and who holds it.

A second source beside the tracer: it reads memory instead of hooking it.
It needs no tracing, no debug symbols and no cooperation from the target::

    from pyleakhunt import census

    result = census.census_core("core.1234")        # a core file (gcore)
    result = census.census_process(1234)            # a live process
    for t in result.types[:10]:                      # biggest first
        print(t.name, t.count, t.size, t.counted_by)
    for group in result.holders["app.Timing"]:
        print(group.count, group.describe())
        # 98000 in a list at app.Profiler.results (a class attribute)

    census.diff(old, new).types                      # what grew

For more questions of one image, open a session::

    with census.open_core("core.1234") as session:
        table = session.census()
        session.holders("app.Timing")
        session.held_by(0x7F3A2C8D1E50)

See docs/census.md.  The scanner is the C extension ``_scan``
(src/census/).
"""

from .diff import CensusDiff, HolderGrowth, TypeGrowth, diff
from .errors import (
    EXIT_CODES,
    BadInputError,
    CensusError,
    NotFoundError,
    ProcessError,
)
from .model import Census, HolderGroup, TypeCount
from .session import ObjectReport, Session
from .take import census_core, census_process, open_core, open_process, run_census

__all__ = [
    "EXIT_CODES",
    "BadInputError",
    "Census",
    "CensusDiff",
    "CensusError",
    "HolderGroup",
    "HolderGrowth",
    "NotFoundError",
    "ObjectReport",
    "ProcessError",
    "Session",
    "TypeCount",
    "TypeGrowth",
    "census_core",
    "census_process",
    "diff",
    "open_core",
    "open_process",
    "run_census",
]
