"""Memory images of live processes.

The target is read, never written: its memory with process_vm_readv, its
mapped files through ``/proc/PID/root`` (so a process in a container is
read with its own files), or ``/proc/PID/map_files`` for those deleted
since (ProcFS.image).  While the writable memory is copied, every
thread is held still with ptrace (``_scan.Pause``: seize and interrupt, see
src/census/pause.h for why not SIGSTOP); the read-only parts of mapped files
are read from the files afterwards, since they cannot change.  A process
that was already stopped (``kill -STOP``) is read as it is and left stopped.

With ``stop=False`` nothing is paused: the copy is then a blur of a moving
heap, which the scanner survives (every pointer is checked) but whose counts
can be slightly off; the census reports broken gc lists if it met any.
"""

from __future__ import annotations

import errno
import mmap
import time
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..process.proc import ProcFS, Region, mapped_files
from . import _scan
from .elf import FileMapping
from .errors import NotPermittedError, ProcessError
from .memory import (
    SEG_FILE,
    SEG_WRITABLE,
    FileCache,
    MemoryImage,
    NotPythonError,
    Segment,
    UnsupportedPythonError,
    file_segments,
    find_interpreter,
)

#: Seconds to wait for every thread to stop.
STOP_TIMEOUT = 5.0
#: Kernel mappings that cannot be read through /proc/PID/mem.
_UNREADABLE = ("[vvar]", "[vsyscall]", "[vvar_vclock]")
PAGE = mmap.PAGESIZE
#: Where the process is read from.
PROC = ProcFS()


@dataclass
class LiveRead:
    """What reading a live process did to it."""

    stopped_for: float  # seconds the target was held still
    was_stopped: bool  # it was stopped before we came (left stopped)
    paused: bool  # we held it still with ptrace
    threads: int


def _proc_error(pid: int, exc: OSError, action: str) -> ProcessError:
    if exc.errno == errno.ESRCH or isinstance(
        exc, (FileNotFoundError, ProcessLookupError)
    ):
        return ProcessError(f"no process with PID {pid}")
    if exc.errno in (errno.EPERM, errno.EACCES):
        tracer = _tracer_of(pid)
        if tracer:
            return ProcessError(
                f"cannot {action} process {pid}: it is already traced by PID "
                f"{tracer} (a debugger?); use --no-stop to read it without "
                "stopping it"
            )
        return NotPermittedError(
            f"not permitted to {action} process {pid} (run as its user or as "
            "root; with kernel.yama.ptrace_scope >= 1 only root or its parent "
            "may)"
        )
    return ProcessError(f"cannot {action} process {pid}: {exc.strerror}")


def _tracer_of(pid: int) -> int:
    return PROC.tracer(pid)


def process_state(pid: int) -> str:
    """The state letter of /proc/PID/stat ("R", "S", "T" stopped...)."""
    try:
        return PROC.state(pid)
    except OSError as exc:
        raise _proc_error(pid, exc, "read") from None


def read_maps(pid: int) -> List[Region]:
    """The mappings of process *pid*."""
    try:
        return PROC.maps(pid)
    except OSError as exc:
        raise _proc_error(pid, exc, "read") from None


def _command_line(pid: int) -> str:
    return PROC.command_line(pid)


def _to_copy(regions: List[Region]) -> List[Region]:
    """The mappings to copy from the process: everything readable except
    read-only file contents (read from the files) and kernel pages."""
    return [
        r
        for r in regions
        if r.readable
        and r.path not in _UNREADABLE
        and not r.path.startswith("/dev/")
        and (r.writable or not r.file_backed)
    ]


def _copy(pid: int, regions: List[Region], buffer: mmap.mmap) -> List[Segment]:
    """Copies *regions* of process *pid* into *buffer*, one after another,
    with process_vm_readv (``_scan.read_process``); pages the kernel
    refuses stay zero."""
    segments: List[Segment] = []
    view = memoryview(buffer)
    offset = 0
    for region in regions:
        size = region.end - region.start
        part = view[offset : offset + size]
        try:
            _scan.read_process(pid, region.start, part)
        except OSError as exc:
            raise _proc_error(pid, exc, "read the memory of") from None
        flags = SEG_WRITABLE if region.writable else 0
        if region.file_backed:
            flags |= SEG_FILE
        segments.append((region.start, part, flags))
        offset += size
    return segments


def _hold_still(pid: int, stop: bool) -> Tuple[Optional[_scan.Pause], bool]:
    """Stops *pid* unless told not to or already stopped; returns the
    pause (None if none) and whether it was stopped before."""
    was_stopped = process_state(pid) in ("T", "t")
    if not stop or was_stopped:
        return None, was_stopped
    try:
        return _scan.Pause(pid, STOP_TIMEOUT), False
    except OSError as exc:
        if exc.errno == errno.ETIMEDOUT:
            raise ProcessError(
                f"process {pid} did not stop within {STOP_TIMEOUT:.0f} s "
                "(a thread stuck in uninterruptible sleep?); try --no-stop"
            ) from None
        raise _proc_error(pid, exc, "stop") from None


def process_image(pid: int, stop: bool = True) -> Tuple[MemoryImage, LiveRead, str]:
    """The memory image of live process *pid*, what reading it did, and its
    command line.

    Raises ProcessError if the process is gone, may not be read, or is not
    CPython 3.10-3.15.
    """
    regions = read_maps(pid)
    mappings = [
        FileMapping(r.start, r.end, r.offset, r.path) for r in regions if r.file_backed
    ]
    files = FileCache(
        root=f"/proc/{pid}/root",
        paths={m.path: PROC.image(pid, m) for m in mapped_files(regions)},
    )
    warnings: List[str] = []
    try:
        interpreter = find_interpreter(mappings, files.elf, warnings)
    except (NotPythonError, UnsupportedPythonError) as exc:
        raise ProcessError(f"process {pid}: {exc}") from None
    to_copy = _to_copy(regions)
    total = sum(r.end - r.start for r in to_copy)
    buffer = mmap.mmap(-1, max(total, PAGE))
    _scan.prefault(buffer)  # before the pause: the target waits for no fault
    pause, was_stopped = _hold_still(pid, stop)
    started = time.perf_counter()
    try:
        segments = _copy(pid, to_copy, buffer)
    finally:
        stopped_for = time.perf_counter() - started
        threads = pause.threads if pause else 0
        if pause is not None:
            pause.resume()
    covered = [(r.start, r.end) for r in to_copy]
    segments += file_segments(mappings, covered, files)
    image = MemoryImage(
        segments=segments,
        mappings=mappings,
        interpreter=interpreter,
        memory_bytes=total,
        warnings=warnings,
        resources=[buffer, *files.opened],
    )
    read = LiveRead(
        stopped_for=stopped_for if pause else 0.0,
        was_stopped=was_stopped,
        paused=pause is not None,
        threads=threads,
    )
    return image, read, _command_line(pid)
