"""One census in progress: a memory image, the scanner over it, and the
questions asked of it (the type table, the holders of a type, who holds
one object), answered as the plain values of ``model.py``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from . import _scan
from .errors import BadInputError, NotFoundError, ProcessError
from .memory import MemoryImage
from .model import Census, HolderGroup, TypeCount, now
from .paths import Step, describe_role, holder_steps, render_path
from .progress import phase

#: Holder groups kept per type.
HOLDERS_PER_TYPE = 5
#: Types whose holders a census computes unless told otherwise.
DEFAULT_HOLDER_TYPES = 25


@dataclass
class ObjectReport:
    """``--held-by ADDRESS``: one object, its path, and who refers to it."""

    address: int
    type_name: str
    size: int
    path: Optional[str]
    role: str
    #: (address, type name, path or None) of each referrer.
    referrers: List[Tuple[int, str, Optional[str]]] = field(default_factory=list)
    #: For an object no root reaches: the types climbed from it, and why
    #: the climb stopped (see HolderGroup).
    chain: List[Tuple[int, str]] = field(default_factory=list)
    end: str = ""


@dataclass
class Source:
    """Where an image came from, for the census's header."""

    name: str
    kind: str  # "core" or "process"
    pid: Optional[int] = None
    process: str = ""


def _runtime_warnings(runtime: Dict[str, object], stats: Dict[str, int]) -> List[str]:
    """What makes the counts of the gc lists less than exact."""
    if runtime.get("collecting") or stats.get("marked_links"):
        return [
            "a garbage collection was running: the objects it was examining "
            "were on a list of its own, which the census does not walk"
        ]
    return []


class Session:
    """The scanner over one memory image.

    Build it, call :meth:`census`, then ask :meth:`holders` and
    :meth:`held_by`; :meth:`close` releases the image.  The holder graph is
    built on the first question that needs it.
    """

    def __init__(self, image: MemoryImage, source: Source) -> None:
        it = image.interpreter
        self.image = image
        self.source = source
        self.timings: Dict[str, float] = {}
        self._graph_built = False
        self._types: Dict[str, int] = {}  # type name -> type address
        try:
            self.scan = _scan.Image(
                image.segments, it.minor, it.runtime, it.type_type, it.kinds
            )
        except ValueError as exc:
            # The image does not read as the Python its interpreter file
            # says (3.13+: its own _Py_DebugOffsets disagree).
            image.close()
            error = ProcessError if source.kind == "process" else BadInputError
            raise error(f"{source.name}: {exc}") from None

    def close(self) -> None:
        """Drops the scanner, then the image's buffers."""
        self.scan = None  # type: ignore[assignment]
        self.image.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = round(time.perf_counter() - started, 4)

    # ---- the type table ------------------------------------------------

    def census(self) -> Census:
        """Counts every object by type (no holders yet)."""
        started = time.perf_counter()
        phase("counting objects")
        try:
            rows, stats = self.scan.census()
        except _scan.CensusError as exc:
            raise BadInputError(f"{self.source.name}: {exc}") from None
        self._timed("census_s", started)
        types = []
        for (
            addr,
            name,
            gc_count,
            gc_size,
            scan_count,
            scan_size,
            is_class,
            kind,
            immortal_count,
        ) in rows:
            # Two types may share a name (a class defined twice); the
            # bigger keeps it, the other gets its address.
            if name in self._types:
                name = f"{name}@{addr:#x}"
            self._types[name] = addr
            types.append(
                TypeCount(
                    name,
                    kind,
                    is_class,
                    gc_count,
                    gc_size,
                    scan_count,
                    scan_size,
                    immortal_count,
                )
            )
        it = self.image.interpreter
        version = self.scan.sys_str("version")
        if version:  # "3.10.13 (main, ...)": the micro version too
            it.version = version.split()[0]
        runtime = self.scan.target()
        return Census(
            source=self.source.name,
            source_kind=self.source.kind,
            pid=self.source.pid,
            process=self.source.process,
            python=it.version,
            interpreter=it.path,
            created=now(),
            memory_bytes=self.image.memory_bytes,
            types=types,
            stats=dict(stats),
            timings=self.timings,
            warnings=list(self.image.warnings) + _runtime_warnings(runtime, stats),
            runtime=runtime,
        )

    # ---- holders -------------------------------------------------------

    def _graph(self) -> None:
        if not self._graph_built:
            started = time.perf_counter()
            phase("finding paths from the roots")
            try:
                self.stats_graph = self.scan.build_graph()
            except _scan.CensusError as exc:
                raise BadInputError(f"{self.source.name}: {exc}") from None
            self._timed("graph_s", started)
            self._graph_built = True

    def _type_addr(self, name: str) -> int:
        if name not in self._types:
            raise NotFoundError(f"no object of type {name!r} in the census")
        return self._types[name]

    def holders(
        self, type_name: str, limit: int = HOLDERS_PER_TYPE
    ) -> List[HolderGroup]:
        """The ways objects of *type_name* are held, most objects first."""
        self._graph()
        phase(f"finding who holds {type_name}")
        addr = self._type_addr(type_name)
        groups: List[HolderGroup] = []
        for pattern, count, size, example in self.scan.holders(addr, limit):
            if pattern is None:
                groups += self._unreached(addr, limit)
            else:
                groups.append(self._reached(pattern, count, size, example))
        groups.sort(key=lambda g: (-g.count, -g.size))
        return groups[:limit]

    def _reached(
        self, pattern: int, count: int, size: int, example: int
    ) -> HolderGroup:
        steps: List[Step] = self.scan.pattern_steps(pattern)
        holder = holder_steps(steps)
        return HolderGroup(
            count=count,
            size=size,
            path=render_path(steps),
            holder=render_path(holder) if holder else "",
            holder_type=holder[-1][3] if holder else "",
            role=describe_role(steps),
            holder_role=describe_role(holder) if holder else "",
            example=example,
        )

    def _type_of(self, addr: int) -> str:
        info = self.scan.object_info(addr)
        return info[1] if info else "?"

    def _unreached(self, type_addr: int, limit: int) -> List[HolderGroup]:
        groups = []
        for count, size, example, end, chain in self.scan.unreached(type_addr, limit):
            holder = ""
            if end == "reached":
                steps = self.scan.path(chain[-1])
                holder = render_path(steps) if steps else ""
            groups.append(
                HolderGroup(
                    count=count,
                    size=size,
                    path="",
                    holder=holder,
                    holder_type=self._type_of(chain[-1]) if len(chain) > 1 else "",
                    role="unreachable",
                    holder_role="",
                    reachable=False,
                    chain=tuple(self._type_of(a) for a in chain[1:]),
                    end=end,
                    example=example,
                )
            )
        return groups

    def add_holders(self, census: Census, type_names: Iterable[str]) -> None:
        """Fills ``census.holders`` for each of *type_names*."""
        started = time.perf_counter()
        for name in type_names:
            if name not in census.holders:
                census.holders[name] = self.holders(name)
        self.timings["holders_s"] = round(
            self.timings.get("holders_s", 0.0) + time.perf_counter() - started, 4
        )
        census.stats.update(getattr(self, "stats_graph", {}))

    # ---- one object ----------------------------------------------------

    def held_by(self, address: int, limit: int = 10) -> ObjectReport:
        """Who holds the object at *address*; raises NotFoundError if the
        census found no object there."""
        self._graph()
        info = self.scan.object_info(address)
        if info is None:
            raise NotFoundError(f"no object at {address:#x} in the census")
        _, type_name, size, reached = info
        steps = self.scan.path(address) if reached else None
        report = ObjectReport(
            address=address,
            type_name=type_name,
            size=size,
            path=render_path(steps) if steps else None,
            role=describe_role(steps) if steps else "unreachable",
        )
        for referrer in dict.fromkeys(self.scan.referrers(address, limit)):
            ref_steps = self.scan.path(referrer)
            report.referrers.append(
                (
                    referrer,
                    self._type_of(referrer),
                    render_path(ref_steps) if ref_steps else None,
                )
            )
        if not reached:
            chain, report.end = self.scan.climb(address)
            report.chain = [(a, self._type_of(a)) for a in chain[1:]]
        return report
