"""Helpers shared by the workloads (they run in the child process)."""

from __future__ import annotations

import gc
import os
import resource
import sys
from time import perf_counter, process_time
from typing import Any, Callable, Dict, Iterable, List, Tuple

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident set size now, from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def max_rss_bytes() -> int:
    """Peak resident set size so far (ru_maxrss, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def settle() -> None:
    """Collect garbage so that every configuration starts from the same heap."""
    gc.collect()


def stack_depth() -> int:
    """The number of Python frames of the caller's stack (caller included)."""
    frame = sys._getframe(1)
    depth = 0
    while frame is not None:
        depth += 1
        frame = frame.f_back
    return depth


class _Depth:
    seen = 0


def _descend(k: int, func: Callable[..., Any], args: Tuple[Any, ...]) -> Any:
    if k <= 0:
        _Depth.seen = stack_depth() + 1  # + the frame of func itself
        return func(*args)
    return _descend(k - 1, func, args)


def call_at_depth(depth: int, func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)`` called under *depth* extra Python frames (0: none)."""
    if depth <= 0:
        _Depth.seen = stack_depth() + 1
        return func(*args)
    return _descend(depth - 1, func, args)


def last_stack_depth() -> int:
    """Python frames on the stack of the last `call_at_depth` callee."""
    return _Depth.seen


def lines_of(statistics: Iterable[Any], filename: str) -> List[List[int]]:
    """``[lineno, size, count]`` of the 'lineno' statistics in *filename*."""
    rows = []
    for stat in statistics:
        frame = stat.traceback[0]
        if frame.filename == filename:
            rows.append([frame.lineno, stat.size, stat.count])
    rows.sort()
    return rows


def compare_lines(a: List[List[int]], b: List[List[int]]) -> str:
    return "OK" if a == b else "MISMATCH"


def timed(
    result: Dict[str, Any], name: str, func: Callable[..., Any], *args: Any, **kw: Any
) -> Any:
    """``func(*args, **kw)``, timed into ``result[name + "_seconds"]`` (wall
    clock) and ``result[name + "_cpu_seconds"]`` (this process's CPU time)."""
    c0, t0 = process_time(), perf_counter()
    value = func(*args, **kw)
    result[name + "_seconds"] = perf_counter() - t0
    result[name + "_cpu_seconds"] = process_time() - c0
    return value
