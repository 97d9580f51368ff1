"""Taking a census of a core file or of a live process."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Iterable, Iterator, Optional, Sequence

from .elf import open_core as _open_core_file
from .errors import BadInputError
from .live import process_image
from .memory import NotPythonError, UnsupportedPythonError, core_image
from .model import Census
from .progress import phase
from .session import DEFAULT_HOLDER_TYPES, Session, Source


@contextlib.contextmanager
def open_core(path: str, python: Optional[str] = None) -> Iterator[Session]:
    """A Session over the core file at *path*.

    *python* is the interpreter (executable or libpython) the core came
    from, for when the path recorded in the core is not usable here.
    Raises BadInputError (exit code 3) for any problem with the file.
    """
    started = time.perf_counter()
    phase("reading the core")
    core = _open_core_file(path)
    try:
        try:
            image = core_image(core, python)
        except (NotPythonError, UnsupportedPythonError) as exc:
            raise BadInputError(f"{path!r}: {exc}") from None
        info = core.process
        source = Source(
            os.path.abspath(path),
            "core",
            pid=info.pid,
            process=info.args or info.name,
        )
        session = Session(image, source)
        session.timings["load_s"] = round(time.perf_counter() - started, 4)
        try:
            yield session
        finally:
            session.close()
    finally:
        try:
            core.close()
        except BufferError:
            pass  # a buffer still points in; unmapped when it is freed


@contextlib.contextmanager
def open_process(pid: int, stop: bool = True) -> Iterator[Session]:
    """A Session over a copy of the memory of live process *pid*.

    The process is held still (ptrace) only while its writable memory is
    copied, unless *stop* is false or it was already stopped.  Raises
    ProcessError (exit code 4) if it is gone, off limits or not Python.
    """
    started = time.perf_counter()
    phase(f"copying the memory of process {pid}")
    image, read, command = process_image(pid, stop)
    session = Session(image, Source(f"process {pid}", "process", pid, command))
    session.timings["load_s"] = round(time.perf_counter() - started, 4)
    session.timings["stopped_s"] = round(read.stopped_for, 4)
    if read.was_stopped:
        image.warnings.append(
            f"process {pid} was already stopped: read as it was, left stopped"
        )
    elif not read.paused:
        image.warnings.append(
            f"process {pid} was read while running (--no-stop): counts may be "
            "slightly off"
        )
    try:
        yield session
    finally:
        session.close()


def holder_types(census: Census, count: int, extra: Sequence[str] = ()) -> list:
    """The types whose holders a census shows: the *count* biggest by
    bytes, then those asked for."""
    names = [t.name for t in census.types[:count]]
    return names + [n for n in extra if n not in names]


def run_census(
    session: Session, holders: int = DEFAULT_HOLDER_TYPES, types: Iterable[str] = ()
) -> Census:
    """The type table of *session*, with the holders of the *holders*
    biggest types and of *types* (names as :meth:`Census.find_type` takes)."""
    census = session.census()
    wanted = [census.find_type(name).name for name in types]
    if holders > 0 or wanted:
        session.add_holders(census, holder_types(census, holders, wanted))
    return census


def census_core(
    path: str,
    python: Optional[str] = None,
    holders: int = DEFAULT_HOLDER_TYPES,
    types: Iterable[str] = (),
) -> Census:
    """The census of a core file (see :func:`open_core`, :func:`run_census`)."""
    with open_core(path, python) as session:
        return run_census(session, holders, types)


def census_process(
    pid: int,
    stop: bool = True,
    holders: int = DEFAULT_HOLDER_TYPES,
    types: Iterable[str] = (),
) -> Census:
    """The census of live process *pid* (see :func:`open_process`)."""
    with open_process(pid, stop) as session:
        return run_census(session, holders, types)
