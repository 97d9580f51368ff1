"""pyleakhunt: hunt memory leaks in Python programs.

The module-level API is tracemalloc's, with the same semantics, so that
``import pyleakhunt as tracemalloc`` works in existing code.  On top of it:

- ``take_snapshot(traces=False)`` copies live per-site aggregates instead of
  every block: milliseconds, however big the heap;
- ``Snapshot.top()`` and ``Snapshot.diff()``;
- ``get_stats()``, the tracer's own counters.
"""

from __future__ import annotations

import atexit
import linecache  # noqa: F401  (tracemalloc exposes it; tests patch it)
import os
import sys
import time
import warnings
from array import array
from typing import Any, Dict, Optional, Tuple, Union

from . import _core
from ._raw import RawFrames, RawSite, RawSnapshot
from .snapshot import (
    AggregatedSnapshotError,
    BaseFilter,
    DomainFilter,
    Filter,
    Frame,
    RawTraces,
    Snapshot,
    Statistic,
    StatisticDiff,
    Trace,
    Traceback,
    untraced,
)
from .units import parse_size

__version__ = "0.1.0"

__all__ = [
    "AggregatedSnapshotError",
    "BaseFilter",
    "DomainFilter",
    "FileFormatError",
    "Filter",
    "Frame",
    "Snapshot",
    "Statistic",
    "StatisticDiff",
    "Trace",
    "Traceback",
    "clear_traces",
    "get_object_traceback",
    "get_stats",
    "get_traceback_limit",
    "get_traced_memory",
    "get_tracemalloc_memory",
    "is_tracing",
    "reset_peak",
    "start",
    "stop",
    "take_snapshot",
]

_Frame = Frame  # the name CPython's test suite uses
_core.set_site_type(RawSite)  # snapshots build RawSite records directly

clear_traces = _core.clear_traces
get_traceback_limit = _core.get_traceback_limit
get_tracemalloc_memory = _core.get_tracemalloc_memory
reset_peak = _core.reset_peak


class _Session:
    """What start() learnt that stop() and the checks need."""

    #: Whether the stdlib tracemalloc was tracing (below us) when we started.
    stdlib_below = False

    #: Whether this session already warned that another tracer had taken
    #: the reference tracer slot (3.13+).
    ref_tracer_warned = False


def _stdlib_tracing() -> bool:
    tracemalloc = sys.modules.get("tracemalloc")
    return tracemalloc is not None and tracemalloc.is_tracing()


def _check_hooks() -> None:
    """Stop cleanly if another tracer removed our hooks behind our back.

    The stdlib tracemalloc, started before pyleakhunt and stopped while
    pyleakhunt traces, reinstalls the allocators it saved, which drops our
    hooks.  Our tables then go stale, so say so instead of answering.
    """
    if not _core.is_tracing():
        return
    if _core.hooks_on_top():
        _check_ref_tracer()
        return
    if _stdlib_tracing() and not _Session.stdlib_below:
        _check_ref_tracer()
        return  # tracemalloc was started after us and wraps our hooks
    _core.abandon()
    raise RuntimeError(
        "pyleakhunt stopped tracing: another tracer (such as the stdlib "
        "tracemalloc) removed its allocator hooks; stop the other tracer "
        "only after pyleakhunt, or start pyleakhunt again"
    )


def _check_ref_tracer() -> None:
    """Take back the reference tracer slot (3.13+) if another tracer took it.

    CPython has one slot, and the stdlib tracemalloc takes it when it starts
    (after pyleakhunt).  Until pyleakhunt takes it back, here, objects
    reused from free lists keep the traceback of their earlier life in
    pyleakhunt's tables; from then on pyleakhunt forwards every event to
    the other tracer, so both stay exact.
    """
    if not _core.ref_tracer_check() or _Session.ref_tracer_warned:
        return
    _Session.ref_tracer_warned = True
    warnings.warn(
        "another tracer (such as the stdlib tracemalloc started after "
        "pyleakhunt) had taken the interpreter's reference tracer: objects "
        "reused from free lists meanwhile keep an earlier traceback in "
        "pyleakhunt; it has taken the tracer back and shares it now (start "
        "tracemalloc before pyleakhunt to avoid the gap)",
        RuntimeWarning,
        stacklevel=3,
    )


def start(
    nframe: int = 1,
    *,
    sample_bytes: Union[int, str, None] = None,
    total_nframe: bool = True,
    fresh_objects: Optional[bool] = None,
) -> None:
    """Start tracing Python memory allocations.

    *nframe* is the number of frames kept per traceback (1 to 65535).  If
    tracing is already on, only the limit (and *total_nframe*) changes.

    *total_nframe*: whether each traceback also counts the frames beyond
    *nframe* (``Traceback.total_nframe``), as tracemalloc does.  On 3.10
    and 3.11 that walks the whole stack on every allocation, which in a
    server some 40 frames deep costs more than the rest of the tracing;
    from 3.12 the interpreter's own count is read, at the same cost at any
    depth.  With ``False``, ``total_nframe`` is None and tracebacks that
    differ only below the limit are one.

    *sample_bytes* (a number of bytes, or text such as ``"512KiB"``) turns
    on sampled tracing: on average one allocation per *sample_bytes* bytes
    is recorded, larger blocks proportionally more often, and every figure
    becomes an unbiased estimate.  ``None`` (the default) traces every
    allocation exactly.

    *fresh_objects*: on Python 3.10 to 3.12 CPython makes dicts, lists,
    small tuples and floats in the memory of dead ones kept in its free
    lists, and tells no extension (tracemalloc is told from inside the
    interpreter).  With ``True`` those free lists are kept empty while
    tracing, so that every such object is allocated, and traced, at the
    line that makes it, as tracemalloc traces it; it costs an allocation
    for each.  From 3.13 the tracer sees objects reused, but not a dict's
    key table, which is no object: with ``True`` the free list of key
    tables is off, so that a small dict kept per call is traced whole at
    its own line (tracemalloc leaves its table at the line of the dead
    dict it came from).  With ``False`` the free lists work as usual:
    faster, but reused memory keeps the traceback of its earlier life.
    ``None`` (the default) leaves a running tracer as it is, and otherwise
    means ``True`` for exact tracing and ``False`` for sampled tracing,
    whose point is a low cost.
    """
    if not isinstance(nframe, int) or isinstance(nframe, bool):
        raise TypeError(f"nframe must be an int, not {type(nframe).__name__}")
    if fresh_objects is not None and not isinstance(fresh_objects, bool):
        raise TypeError(
            "fresh_objects must be True, False or None, not "
            + type(fresh_objects).__name__
        )
    mean = 0 if sample_bytes is None else parse_size(sample_bytes)
    if sample_bytes is not None and mean < 1:
        raise ValueError("sample_bytes must be at least 1 byte")
    if not _core.is_tracing():
        _Session.stdlib_below = _stdlib_tracing()
        _Session.ref_tracer_warned = False
        if fresh_objects is None:
            fresh_objects = sample_bytes is None
    _core.start(nframe, mean, bool(total_nframe))
    if fresh_objects is not None:
        _core.keep_free_lists_empty(fresh_objects)


def stop() -> None:
    """Stop tracing and forget every trace."""
    try:
        _check_hooks()
    except RuntimeError:
        return  # already stopped, which is what the caller wants
    _core.stop()


def is_tracing() -> bool:
    """True while pyleakhunt traces allocations."""
    return _core.is_tracing()


def get_traced_memory() -> Tuple[int, int]:
    """``(current, peak)`` size in bytes of the traced memory blocks."""
    _check_hooks()
    return _core.get_traced_memory()


def _get_object_traceback(obj: object) -> Optional[RawFrames]:
    return _core.get_object_traceback(obj)


def get_object_traceback(obj: object) -> Optional[Traceback]:
    """The traceback where *obj* was allocated, or None if it was not traced."""
    _check_ref_tracer()
    frames = _get_object_traceback(obj)
    return Traceback(frames) if frames is not None else None


def get_stats() -> Dict[str, Any]:
    """The tracer's own counters.

    ``alloc_events`` and ``free_events`` count the hooks' calls,
    ``live_blocks`` and ``unique_tracebacks`` the tables' sizes,
    ``lost_blocks`` the blocks it failed to record, ``tracer_memory`` the
    bytes of its own tables, ``lock_slow_entries`` how often a thread
    without the GIL had to take the tables' lock the slow way (see
    docs/design.md), and ``reuse_lookups`` how many objects the reference
    tracer looked up in the tables, because they were not created in the
    block just allocated (objects reused from free lists, 3.13+), and
    ``adopted_blocks`` how many of those were in blocks not recorded until
    then, and recorded at their new line (dicts, lists, tuples, floats,
    ints and complex numbers, 3.13+).
    """
    stats = _core.get_stats()
    stats["tracing"] = _core.is_tracing()
    stats["traceback_limit"] = _core.get_traceback_limit()
    return stats


@untraced
def _raw_snapshot(full: bool) -> RawSnapshot:
    """The tracer's current state as plain data."""
    _check_hooks()
    sites, blocks, lost_blocks = _core.snapshot(full)
    block_sites = block_sizes = None
    if blocks is not None:
        block_sites = array("I")
        block_sites.frombytes(blocks[0])
        block_sizes = array("Q")
        block_sizes.frombytes(blocks[1])
    return RawSnapshot(
        traceback_limit=_core.get_traceback_limit(),
        sites=sites,
        block_sites=block_sites,
        block_sizes=block_sizes,
        lost_blocks=lost_blocks,
        sample_bytes=_core.get_stats()["sample_bytes"],
        pid=os.getpid(),
        timestamp=time.time(),
    )


def _get_traces() -> RawTraces:
    """Every live trace as ``(domain, size, frames, total_nframe)`` tuples.

    Empty when not tracing, like tracemalloc's.
    """
    if not _core.is_tracing():
        return RawTraces([], array("I"), array("Q"))
    raw = _raw_snapshot(full=True)
    traces = RawTraces(raw.sites, raw.block_sites, raw.block_sizes)
    traces.snapshot = raw  # type: ignore[attr-defined]
    return traces


@untraced
def take_snapshot(traces: bool = True) -> Snapshot:
    """Take a snapshot of the live memory blocks.

    With ``traces=False`` the snapshot is aggregated: per-site totals only,
    whose cost follows the number of call sites, not of live blocks.  Its
    statistics are the same as a full snapshot's.
    """
    if not is_tracing():
        raise RuntimeError(
            "the tracemalloc module must be tracing memory allocations to "
            "take a snapshot"
        )
    if not traces:
        return Snapshot._from_raw(_raw_snapshot(full=False))
    raw_traces = _get_traces()
    limit = get_traceback_limit()
    raw = getattr(raw_traces, "snapshot", None)
    if raw is not None and raw.traceback_limit == limit:
        return Snapshot._from_raw(raw)
    return Snapshot(raw_traces, limit)


def __getattr__(name: str) -> Any:
    """``FileFormatError`` (what `Snapshot.load` raises on a bad file),
    imported on first use: the file format module is not needed to trace,
    and importing it would slow down every traced program's start."""
    if name == "FileFormatError":
        from .fileformat import FileFormatError

        return FileFormatError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _stop_at_exit() -> None:
    # Release the tables (and the code objects they keep) before the
    # interpreter tears itself down: the main one, or a subinterpreter
    # that started tracing.  Another subinterpreter that imported
    # pyleakhunt leaves the tracing alone (its frames are not recorded).
    if (
        _core.is_tracing()
        and _core.hooks_on_top()
        and (_core.in_main_interpreter() or _core.started_tracing_here())
    ):
        _core.stop()


atexit.register(_stop_at_exit)
