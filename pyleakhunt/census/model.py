"""The census as plain values: what fills the memory, and who holds it.

:class:`Census` is what ``pyleakhunt census`` prints, saves with ``-o`` and
compares with ``census diff``.  It is plain data (no pointer into the memory
it came from), so it can be saved as JSON and loaded again; the file format
is described in docs/census.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .._files import write_atomically
from .errors import BadInputError, NotFoundError

#: First key of a saved census; ``version`` changes when the layout does.
FORMAT_NAME = "pyleakhunt-census"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TypeCount:
    """How many objects of one type, and how many bytes they take.

    ``gc_count``/``gc_size`` were counted exactly on the collector's lists;
    ``scan_count``/``scan_size`` by scanning memory, for objects the
    collector does not track (strs, ints, and containers it untracked).
    ``size`` counts what each object owns (see docs/census.md): its header,
    its body and its variable-size storage (a list's item array, a dict's
    table, an instance's attribute values).  ``is_class`` is true for types
    made at run time (by a class statement, or a heap type of an extension),
    false for the static types built into the interpreter; ``kind`` is how
    the scanner reads the objects (``object`` for plain instances, ``dict``
    for dicts and their subclasses, ``other`` when read word by word).
    ``immortal_count`` of the objects counted are immortal (3.12+: their
    reference count never changes, and they are never freed).
    """

    name: str
    kind: str
    is_class: bool
    gc_count: int
    gc_size: int
    scan_count: int
    scan_size: int
    immortal_count: int = 0

    @property
    def count(self) -> int:
        """All objects of the type."""
        return self.gc_count + self.scan_count

    @property
    def size(self) -> int:
        """All their bytes."""
        return self.gc_size + self.scan_size

    @property
    def counted_by(self) -> str:
        """``"gc"``, ``"scan"`` or ``"gc+scan"``: how the objects were found."""
        ways = [w for w, n in (("gc", self.gc_count), ("scan", self.scan_count)) if n]
        return "+".join(ways) or "none"


@dataclass(frozen=True)
class HolderGroup:
    """Objects of one type held the same way.

    For objects reached from a root, ``path`` is their path with the parts
    that vary between siblings as ``[*]`` (``app.Profiler.results[*]``),
    ``holder`` the path of what directly holds them
    (``app.Profiler.results``), of type ``holder_type``; ``role`` says what
    each object is to its holder ("an item of a list") and ``holder_role``
    what the holder is ("a class attribute").

    Objects no root reaches have ``reachable`` false; ``chain`` then lists
    the types of their referrers, upwards from one of them, and ``end`` how
    that climb ended: ``no_referrer`` (nothing counted refers to the top:
    C code, or a leaked reference), ``cycle`` (a reference cycle),
    ``too_deep``, or ``reached`` (the top is reachable, at ``holder``).
    """

    count: int
    size: int
    path: str
    holder: str
    holder_type: str
    role: str
    holder_role: str
    reachable: bool = True
    chain: Tuple[str, ...] = ()
    end: str = ""
    example: int = 0

    _CONTAINER_ROLES = ("an item of", "a value in", "a member of", "a key of")

    def describe(self) -> str:
        """One line saying how these objects are held."""
        if not self.reachable:
            return self._describe_unreachable()
        if self.role == "a name in a namespace":
            return f"names in the namespace of {self.holder} ({self.holder_role})"
        if self.role == "a key of a dict" and self.holder:
            where = f"keys of a {self.holder_type} at {self.holder}"
            return f"{where} ({self.holder_role})" if self.holder_role else where
        if self.role.startswith(self._CONTAINER_ROLES) and self.holder:
            where = f"in a {self.holder_type} at {self.holder}"
            return f"{where} ({self.holder_role})" if self.holder_role else where
        return f"{self.role}: {self.path}"

    def _describe_unreachable(self) -> str:
        via = " <- ".join(self.chain) if self.chain else "nothing"
        if self.end == "reached":
            return f"held by {via}, reachable at {self.holder}"
        if self.end == "cycle":
            return (
                f"held by {via}: a reference cycle that no root reaches "
                "(garbage not yet collected, or held from C code)"
            )
        if not self.chain:
            return (
                "no referrer among the objects counted: held from C code, "
                "a C stack, or a leaked reference"
            )
        return (
            f"held by {via}, which nothing counted refers to (C code, "
            "a C stack, or a leaked reference)"
        )


@dataclass
class Census:
    """One census: a table of types, and the holders of the biggest."""

    source: str
    source_kind: str  # "core" or "process"
    pid: Optional[int]
    process: str  # the process's command line, when known
    python: str  # "3.12.1"
    interpreter: str  # the file the runtime was found in
    created: float
    memory_bytes: int
    types: List[TypeCount]
    holders: Dict[str, List[HolderGroup]] = field(default_factory=dict)
    stats: Dict[str, int] = field(default_factory=dict)
    timings: Dict[str, float] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    #: What the target said about itself: its PY_VERSION_HEX and the
    #: offsets its _Py_DebugOffsets gave (3.13+), and its collector
    #: ("generational", or "incremental" on 3.14.0-3.14.4).
    runtime: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.types.sort(key=lambda t: (-t.size, -t.count, t.name))

    @property
    def total_count(self) -> int:
        """Objects found, of every type."""
        return sum(t.count for t in self.types)

    @property
    def total_size(self) -> int:
        """Their bytes."""
        return sum(t.size for t in self.types)

    def find_type(self, name: str) -> TypeCount:
        """The type called *name*: its full name (``app.Timing``), or a
        last part that only one type has (``Timing``).

        Raises NotFoundError, listing the candidates if several match.
        """
        exact = [t for t in self.types if t.name == name]
        if exact:
            return exact[0]
        tail = [t for t in self.types if t.name.rsplit(".", 1)[-1] == name]
        if len(tail) == 1:
            return tail[0]
        if tail:
            names = ", ".join(sorted(t.name for t in tail))
            raise NotFoundError(f"type {name!r} is ambiguous: {names}")
        raise NotFoundError(f"no object of type {name!r} in the census")

    # ---- saving and loading -------------------------------------------

    def to_dict(self) -> Dict[str, Any]:
        """The census as JSON-ready data (the saved file's layout)."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "source": self.source,
            "source_kind": self.source_kind,
            "pid": self.pid,
            "process": self.process,
            "python": self.python,
            "interpreter": self.interpreter,
            "created": self.created,
            "memory_bytes": self.memory_bytes,
            "total_count": self.total_count,
            "total_size": self.total_size,
            "stats": self.stats,
            "timings": self.timings,
            "warnings": self.warnings,
            "runtime": self.runtime,
            "types": [
                dict(asdict(t), count=t.count, size=t.size, counted_by=t.counted_by)
                for t in self.types
            ],
            "holders": {
                name: [dict(asdict(g), chain=list(g.chain)) for g in groups]
                for name, groups in self.holders.items()
            },
        }

    @classmethod
    def from_dict(cls, doc: Dict[str, Any], source: str = "") -> Census:
        """The census saved as *doc*; raises BadInputError if malformed."""
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            raise BadInputError(f"{source!r} is not a saved census")
        if doc.get("version") != FORMAT_VERSION:
            raise BadInputError(
                f"{source!r} is a census of format version {doc.get('version')}; "
                f"this pyleakhunt reads version {FORMAT_VERSION}"
            )
        try:
            types = [
                TypeCount(
                    t["name"],
                    t["kind"],
                    bool(t["is_class"]),
                    int(t["gc_count"]),
                    int(t["gc_size"]),
                    int(t["scan_count"]),
                    int(t["scan_size"]),
                    int(t.get("immortal_count", 0)),
                )
                for t in doc["types"]
            ]
            holders = {
                name: [
                    HolderGroup(**dict(g, chain=tuple(g.get("chain", ()))))
                    for g in groups
                ]
                for name, groups in doc.get("holders", {}).items()
            }
            return cls(
                source=doc["source"],
                source_kind=doc["source_kind"],
                pid=doc.get("pid"),
                process=doc.get("process", ""),
                python=doc["python"],
                interpreter=doc.get("interpreter", ""),
                created=float(doc["created"]),
                memory_bytes=int(doc["memory_bytes"]),
                types=types,
                holders=holders,
                stats=dict(doc.get("stats", {})),
                timings=dict(doc.get("timings", {})),
                warnings=list(doc.get("warnings", [])),
                runtime=dict(doc.get("runtime", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInputError(f"{source!r} is a damaged census: {exc}") from None

    def save(self, path: str) -> None:
        """Writes the census to *path* as JSON (atomically: a temporary
        file renamed over it)."""

        def write(temporary: str) -> None:
            with open(temporary, "w", encoding="utf-8") as f:
                json.dump(self.to_dict(), f, indent=1)
                f.write("\n")

        write_atomically(path, write)

    @classmethod
    def load(cls, path: str) -> Census:
        """The census saved at *path* by :meth:`save`."""
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except FileNotFoundError:
            raise BadInputError(f"{path!r} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadInputError(f"{path!r} is not a saved census: {exc}") from None
        return cls.from_dict(doc, path)


def now() -> float:
    """The time a census is stamped with (seconds since the epoch)."""
    return time.time()
