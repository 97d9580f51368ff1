"""The tracers under test, and how a configuration name maps to one.

A *configuration* is a name such as ``"none"``, ``"tracemalloc-25"`` or
``"pyleakhunt-1"``: a tracer kind from `TRACERS` and, after the dash, the
number of frames kept per traceback.  Kinds that take no nframe (memray,
which always records whole stacks) are configurations by themselves:
``"memray"``, ``"memray-pyalloc"``.  A kind whose optional package is not
installed (`missing`) is skipped by the parent with a note.

Every workload drives its tracer through the small `Tracer` interface
below, so all tracers run exactly the same workload code with the same
settings.

To add a tracer: subclass `Tracer`, decorate it with ``@register("kind")``,
and list its configurations (``"kind-1"``...) in `benchmarks.experiments`.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Type

#: Tracer kinds by name.
TRACERS: Dict[str, Type[Tracer]] = {}

#: The configurations of the core figures, in the order they are run.
STANDARD_CONFIGS = [
    "none",
    "tracemalloc-1",
    "tracemalloc-25",
    "pyleakhunt-1",
    "pyleakhunt-25",
]

#: The configurations of the comparison with other tools (figure 5).
FIELD_CONFIGS = [
    "none",
    "tracemalloc-1",
    "tracemalloc-25",
    "pyleakhunt-1",
    "pyleakhunt-25",
    "pyleakhunt-sampled-25",
    "memray",
    "memray-pyalloc",
]


def register(kind: str) -> Callable[[Type[Tracer]], Type[Tracer]]:
    def decorate(cls: Type[Tracer]) -> Type[Tracer]:
        cls.kind = kind
        TRACERS[kind] = cls
        return cls

    return decorate


def parse_config(name: str) -> tuple[str, int]:
    """``"pyleakhunt-25"`` -> ``("pyleakhunt", 25)``; ``"none"`` -> ``("none", 0)``;
    ``"memray-pyalloc"`` -> ``("memray-pyalloc", 0)`` (a kind without nframe)."""
    if name in TRACERS and not TRACERS[name].uses_nframe:
        return name, 0
    kind, sep, nframe = name.rpartition("-")
    if not sep:
        kind, nframe = name, "0"
    if kind not in TRACERS:
        raise ValueError(f"unknown tracer {kind!r} in configuration {name!r}")
    try:
        frames = int(nframe)
    except ValueError:
        raise ValueError(f"bad nframe in configuration {name!r}") from None
    if TRACERS[kind].uses_nframe and frames < 1:
        raise ValueError(f"configuration {name!r} needs nframe >= 1")
    return kind, frames


def missing(name: str) -> Optional[str]:
    """Why configuration *name* cannot run here (a package that is not
    installed), or None.  Checked without importing the package."""
    import importlib.util

    package = TRACERS[parse_config(name)[0]].requires
    if package and importlib.util.find_spec(package) is None:
        return "%s not installed (pip install -e .[bench])" % package
    return None


def config_kind(name: str) -> str:
    return parse_config(name)[0]


def config_nframe(name: str) -> int:
    return parse_config(name)[1]


def make(name: str) -> Tracer:
    """The tracer for configuration *name*, its module already imported."""
    kind, nframe = parse_config(name)
    return TRACERS[kind](name, nframe)


class Tracer:
    """One tracer at one nframe.  The base class traces nothing."""

    kind = "?"
    #: Whether take_snapshot(traces=False) (per-site aggregates) exists.
    has_aggregated = False
    #: Whether configurations of this kind carry an nframe ("kind-25").
    uses_nframe = True
    #: The optional package this tracer needs (None: always there).
    requires: Optional[str] = None

    def __init__(self, name: str, nframe: int) -> None:
        self.name = name
        self.nframe = nframe

    @property
    def traces(self) -> bool:
        return False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def take_snapshot(self, traces: bool = True) -> Any:
        raise NotImplementedError(f"{self.name} takes no snapshots")

    def accounting(self) -> Dict[str, Any]:
        """The tracer's own figures about itself (memory, live blocks...)."""
        return {}

    def module_file(self) -> Optional[str]:
        return None

    def build_id(self) -> Optional[str]:
        return None


@register("none")
class NoTracer(Tracer):
    """The untraced baseline."""

    uses_nframe = False


class _TracemallocLike(Tracer):
    """A tracer with tracemalloc's module-level API."""

    def __init__(self, name: str, nframe: int) -> None:
        super().__init__(name, nframe)
        self.module = self._import()

    def _import(self) -> Any:
        raise NotImplementedError

    @property
    def traces(self) -> bool:
        return True

    def start(self) -> None:
        self.module.start(self.nframe)

    def stop(self) -> None:
        self.module.stop()

    def take_snapshot(self, traces: bool = True) -> Any:
        if not traces:
            raise NotImplementedError(f"{self.name} has no aggregated snapshots")
        return self.module.take_snapshot()

    def accounting(self) -> Dict[str, Any]:
        current, peak = self.module.get_traced_memory()
        return {
            "tracer_memory": self.module.get_tracemalloc_memory(),
            "traced_current": current,
            "traced_peak": peak,
        }

    def module_file(self) -> Optional[str]:
        return getattr(self.module, "__file__", None)


@register("tracemalloc")
class StdlibTracemalloc(_TracemallocLike):
    """CPython's tracemalloc, the reference."""

    def _import(self) -> Any:
        import tracemalloc

        return tracemalloc


@register("pyleakhunt")
class Pyleakhunt(_TracemallocLike):
    """pyleakhunt, the tracer under test."""

    has_aggregated = True

    def _import(self) -> Any:
        import pyleakhunt

        return pyleakhunt

    def take_snapshot(self, traces: bool = True) -> Any:
        return self.module.take_snapshot(traces=traces)

    def build_id(self) -> Optional[str]:
        """Size and mtime of the extension, to notice a rebuild mid-run."""
        import os

        path = self.module._core.__file__
        st = os.stat(path)
        return "%s:%d:%d" % (os.path.basename(path), st.st_size, st.st_mtime)

    def accounting(self) -> Dict[str, Any]:
        result = super().accounting()
        stats = self.module.get_stats()
        for key in (
            "live_blocks",
            "unique_tracebacks",
            "lost_blocks",
            "alloc_events",
            "free_events",
            "block_table_capacity",
        ):
            if key in stats:
                result[key] = stats[key]
        return result


@register("pyleakhunt-reuse")
class PyleakhuntReuse(Pyleakhunt):
    """pyleakhunt with CPython's free lists working as usual, as web
    attribution and production mode trace: ``start(nframe,
    fresh_objects=False)``.  Differs from ``pyleakhunt`` on 3.10 to 3.12
    only, where `start` keeps the free lists empty by default."""

    def start(self) -> None:
        self.module.start(self.nframe, fresh_objects=False)


#: The mean sampling interval of the ``pyleakhunt-sampled-N`` configurations.
SAMPLE_BYTES = 512 * 1024


@register("pyleakhunt-sampled")
class PyleakhuntSampled(Pyleakhunt):
    """pyleakhunt's sampled mode: ``start(nframe, sample_bytes=512 KiB)``."""

    def start(self) -> None:
        self.module.start(self.nframe, sample_bytes=SAMPLE_BYTES)


class _Memray(Tracer):
    """memray's `Tracker`, as a context manager around the timed work; it
    writes every allocation to a temporary file, deleted at `stop`.  memray
    keeps whole Python stacks (no nframe).  No snapshots."""

    uses_nframe = False
    requires = "memray"
    trace_python_allocators = False

    def __init__(self, name: str, nframe: int) -> None:
        super().__init__(name, nframe)
        import memray

        self.module = memray
        self._tracker: Any = None
        self._dir: Optional[str] = None

    def start(self) -> None:
        import os
        import tempfile

        self._dir = tempfile.mkdtemp(prefix="bench-memray-")
        path = os.path.join(self._dir, "trace.bin")
        self._tracker = self.module.Tracker(
            path, trace_python_allocators=self.trace_python_allocators
        )
        self._tracker.__enter__()

    def stop(self) -> None:
        import shutil

        if self._tracker is not None:
            self._tracker.__exit__(None, None, None)
            self._tracker = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def accounting(self) -> Dict[str, Any]:
        import os

        if self._dir is None:
            return {}
        path = os.path.join(self._dir, "trace.bin")
        try:
            return {"trace_file_bytes": os.path.getsize(path)}
        except OSError:
            return {}

    def module_file(self) -> Optional[str]:
        return getattr(self.module, "__file__", None)


@register("memray")
class Memray(_Memray):
    """``memray.Tracker(path)``: the defaults (pymalloc's arenas, not the
    objects in them, are what it sees of small Python objects)."""


@register("memray-pyalloc")
class MemrayPyalloc(_Memray):
    """``memray.Tracker(path, trace_python_allocators=True)``: every Python
    allocation, as tracemalloc and pyleakhunt see them."""

    trace_python_allocators = True
