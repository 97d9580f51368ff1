"""Which CPython a process or a file runs: from file names, and from the
``Py_Version`` constant (``PY_VERSION_HEX``, exported since 3.11).

Shared by ``pyleakhunt attach`` (is the target Python, which version, where
its functions are) and the census (which interpreter a core or a process
holds).
"""

from __future__ import annotations

import os
import re
from typing import Iterable, Optional, Tuple

from .elf import ElfFile, Symbol

#: ``libpython3.12.so.1.0``, ``libpython3.13t.so`` (free-threaded), ``...d``
#: (debug), as a path in a memory map.
LIBPYTHON = re.compile(r"/libpython(\d+)\.(\d+)([a-z]*)\.so")
#: An executable named for its version: ``python3.12``, ``python3.13t``.
PYTHON_EXE = re.compile(r"python(\d+)\.(\d+)([a-z]*)$")
#: A version anywhere in a file name or soname: python3.12,
#: libpython3.12.so.1.0, python3.13t, python3.10d.
VERSION_NAME = re.compile(r"python3\.(\d+)([a-z]*)")

#: (major, minor, ABI flags)
NamedVersion = Tuple[int, int, str]


def libpython_version(path: str) -> Optional[NamedVersion]:
    """The version in the name of *path* if it is a libpython, else None."""
    match = LIBPYTHON.search(path)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), match.group(3)


def executable_version(path: str) -> Optional[NamedVersion]:
    """The version in the name of an executable (``python3.11``), or None."""
    match = PYTHON_EXE.search(os.path.basename(path).replace(" (deleted)", ""))
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), match.group(3)


def version_from_name(names: Iterable[str]) -> Tuple[Optional[int], str]:
    """(minor, ABI flags) from the first of *names* that holds ``python3.X``,
    or (None, "")."""
    for name in names:
        match = VERSION_NAME.search(os.path.basename(name))
        if match:
            return int(match.group(1)), match.group(2)
    return None, ""


def hexversion(elf: ElfFile, py_version: Optional[Symbol]) -> Optional[int]:
    """``PY_VERSION_HEX`` as *elf* holds it at its ``Py_Version`` symbol
    *py_version* (None: the file has none, Python 3.10 and older)."""
    if py_version is None:
        return None
    raw = elf.read_vaddr(py_version.value, 4)
    return int.from_bytes(raw, "little") if raw is not None else None
