"""Memory images: the bytes of a process, from a core file or a live process.

A :class:`MemoryImage` is a list of segments ``(address, buffer, flags)``
that the C scanner reads; this module builds one from a core (slices of the
mapped core, plus the read-only parts of mapped files that cores leave out:
the interpreter's string constants, such as static types' names), and finds
the interpreter in it (:func:`find_interpreter`): the mapped ELF file that
exports ``_PyRuntime``, its version, and the addresses of the static types
the scanner knows how to read.  ``live.py`` builds images of live processes
with the same pieces.
"""

from __future__ import annotations

import mmap
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ..process.cpython import hexversion as read_hexversion
from ..process.cpython import version_from_name
from ..process.elf import PF_W, ElfError, ElfFile
from . import _scan
from .elf import CoreFile, FileMapping
from .errors import BadInputError, CensusError

SEG_WRITABLE = _scan.SEG_WRITABLE
SEG_FILE = _scan.SEG_FILE

#: The static types whose layout the scanner knows, by symbol.
KIND_SYMBOLS = {
    "PyBaseObject_Type": "object",
    "PyType_Type": "type",
    "PyList_Type": "list",
    "PyTuple_Type": "tuple",
    "PyDict_Type": "dict",
    "PySet_Type": "set",
    "PyFrozenSet_Type": "set",
    "PyModule_Type": "module",
    "PyFunction_Type": "function",
    "PyCell_Type": "cell",
    "PyMethod_Type": "method",
    "PyCode_Type": "code",
    "_PyWeakref_RefType": "weakref",
    "_PyWeakref_ProxyType": "weakref",
    "_PyWeakref_CallableProxyType": "weakref",
    "PyUnicode_Type": "str",
    "PyBytes_Type": "bytes",
    "PyLong_Type": "int",
    "PyBool_Type": "int",
    "PyFloat_Type": "float",
    "PyByteArray_Type": "bytearray",
    "PyMemberDescr_Type": "member_descriptor",
}


Segment = Tuple[int, object, int]


@dataclass
class Interpreter:
    """The CPython runtime found in an image."""

    path: str  # the file that exports _PyRuntime
    minor: int
    version: str  # "3.12.1", or "3.12" when the micro version is unknown
    runtime: int  # address of _PyRuntime
    type_type: int  # address of PyType_Type
    kinds: Dict[int, str]  # static type address -> kind


@dataclass
class MemoryImage:
    """The memory of one process, as the scanner reads it."""

    segments: List[Segment]
    mappings: List[FileMapping]
    interpreter: Interpreter
    #: Bytes of memory copied or found in the core (not counting the
    #: read-only file contents added from the files themselves).
    memory_bytes: int
    warnings: List[str] = field(default_factory=list)
    #: Buffers to release when done (mmaps of files, copies).
    resources: List[object] = field(default_factory=list)

    def close(self) -> None:
        """Releases the buffers; the image cannot be used afterwards."""
        self.segments = []
        for resource in self.resources:
            try:
                if isinstance(resource, memoryview):
                    resource.release()
                else:
                    resource.close()  # type: ignore[attr-defined]
            except BufferError:
                pass  # still exported; freed with its last user
        self.resources = []


# --------------------------------------------------------------------------
# Finding the interpreter


class NotPythonError(CensusError):
    """No mapped file exports ``_PyRuntime``."""


class UnsupportedPythonError(CensusError):
    """A Python the census cannot read (version or build)."""


def _micro_version(elf: ElfFile, minor: int) -> str:
    """PY_VERSION ("3.10.13") as the file's string constants hold it."""
    match = re.search(rb"\x00(3\.%d\.\d+)\x00" % minor, elf.data)
    return match.group(1).decode() if match else f"3.{minor}"


def _python_version(elf: ElfFile, names: List[str]) -> Tuple[int, str]:
    """(minor, "3.x.y") of the interpreter in *elf*.

    3.11+ exports ``Py_Version`` (PY_VERSION_HEX); before, the file name
    (python3.10, libpython3.10.so) says.  Debug and free-threaded builds have
    other layouts and are refused.
    """
    name_minor, abi = version_from_name(names)
    hexversion = read_hexversion(elf, elf.symbols().get("Py_Version"))
    if hexversion is not None:
        minor = (hexversion >> 16) & 0xFF
        version = f"3.{minor}.{(hexversion >> 8) & 0xFF}"
    elif name_minor is not None:
        minor = name_minor
        version = _micro_version(elf, minor)
    else:
        raise UnsupportedPythonError(
            f"cannot tell which Python version {elf.path} is "
            "(no Py_Version symbol, no version in its name)"
        )
    if "t" in abi:
        raise UnsupportedPythonError(
            f"{elf.path} is a free-threaded build of Python {version}; "
            "only the default (GIL) build is supported"
        )
    if "d" in abi:
        raise UnsupportedPythonError(
            f"{elf.path} is a debug build of Python {version}; "
            "only release builds are supported"
        )
    if minor not in _scan.MINORS:
        supported = f"3.{min(_scan.MINORS)} to 3.{max(_scan.MINORS)}"
        raise UnsupportedPythonError(
            f"Python {version} is not supported (supported: {supported})"
        )
    return minor, version


def _candidate_files(mappings: List[FileMapping]) -> List[FileMapping]:
    """One mapping per file (its first, offset 0), files named like Python
    first: the interpreter is usually python3.x or libpython3.x.so."""
    first: Dict[str, FileMapping] = {}
    for m in sorted(mappings, key=lambda m: m.start):
        if m.path and m.offset == 0 and not m.path.startswith("["):
            first.setdefault(m.path, m)
    return sorted(
        first.values(), key=lambda m: "python" not in os.path.basename(m.path)
    )


OpenElf = Callable[[str], Optional[ElfFile]]


def find_interpreter(
    mappings: List[FileMapping], open_elf: OpenElf, warnings: List[str]
) -> Interpreter:
    """The CPython runtime among the mapped files: the file that exports
    ``_PyRuntime``, where it was loaded, its version and the addresses of
    the static types the scanner knows.

    *open_elf* maps a path recorded in the image to an ElfFile (None if it
    cannot be read).  Raises NotPythonError if no mapped file exports
    ``_PyRuntime``, UnsupportedPythonError for other Pythons.
    """
    missing = []
    for mapping in _candidate_files(mappings):
        elf = open_elf(mapping.path)
        if elf is None:
            if "python" in os.path.basename(mapping.path):
                missing.append(mapping.path)
            continue
        symbols = elf.symbols()
        if "_PyRuntime" not in symbols or "PyType_Type" not in symbols:
            continue
        soname_names = [mapping.path, elf.path]
        minor, version = _python_version(elf, soname_names)
        bias = elf.load_bias(mapping.start)
        kinds = {
            bias + symbols[name].value: kind
            for name, kind in KIND_SYMBOLS.items()
            if name in symbols
        }
        return Interpreter(
            path=mapping.path,
            minor=minor,
            version=version,
            runtime=bias + symbols["_PyRuntime"].value,
            type_type=bias + symbols["PyType_Type"].value,
            kinds=kinds,
        )
    if missing:
        raise NotPythonError(
            f"cannot read {missing[0]}, the interpreter mapped in the process "
            "(taken on another machine or in a container?); pass "
            "--python PATH with a copy of it"
        )
    raise NotPythonError("not a Python process: no mapped file exports _PyRuntime")


# --------------------------------------------------------------------------
# Files mapped into the process


class FileCache:
    """Opens each mapped file once, as an ElfFile (for its symbols) and as
    an mmap (for its bytes), with ``--python`` standing in for the
    interpreter when the recorded path is not usable here."""

    def __init__(
        self,
        root: str = "",
        python: Optional[str] = None,
        paths: Optional[Dict[str, str]] = None,
    ) -> None:
        self.root = root  # /proc/PID/root for a live process
        self.python = python
        # A live process's files by the names its maps give, where they
        # are read here (ProcFS.image: also those deleted since mapped).
        self.paths = paths or {}
        self._elves: Dict[str, Optional[ElfFile]] = {}
        self._maps: Dict[str, Optional[mmap.mmap]] = {}
        self.opened: List[mmap.mmap] = []

    def local_path(self, path: str) -> str:
        """Where to read the file the process had at *path*: for a live
        process, where ``paths`` says; ``--python`` if it has the same
        name, or if *path* names a Python that is not here; else the path
        itself (under /proc/PID/root for a process)."""
        if path in self.paths:
            return self.paths[path]
        local = self.root + path if self.root else path
        if self.python:
            base = os.path.basename(path)
            if base == os.path.basename(self.python):
                return self.python
            if "python" in base and not os.path.exists(local):
                return self.python
        return local

    def elf(self, path: str) -> Optional[ElfFile]:
        """The file at *path* as an ElfFile, or None if unreadable."""
        if path not in self._elves:
            try:
                self._elves[path] = ElfFile(self.local_path(path))
            except ElfError:
                self._elves[path] = None
        return self._elves[path]

    def contents(self, path: str) -> Optional[mmap.mmap]:
        """The bytes of the file at *path*, mapped read-only, or None."""
        if path not in self._maps:
            self._maps[path] = None
            try:
                with open(self.local_path(path), "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    if size > 0:
                        data = mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ)
                        self._maps[path] = data
                        self.opened.append(data)
            except OSError:
                pass
        return self._maps[path]


def _subtract(
    start: int, end: int, covered: List[Tuple[int, int]]
) -> List[Tuple[int, int]]:
    """The parts of [start, end) that no range of sorted *covered* holds."""
    holes = []
    position = start
    for lo, hi in covered:
        if hi <= position:
            continue
        if lo >= end:
            break
        if lo > position:
            holes.append((position, lo))
        position = max(position, hi)
        if position >= end:
            break
    if position < end:
        holes.append((position, end))
    return holes


def file_segments(
    mappings: List[FileMapping], covered: List[Tuple[int, int]], files: FileCache
) -> List[Segment]:
    """Segments for the parts of file mappings that *covered* leaves out,
    read from the files themselves (read-only data does not change)."""
    covered = sorted(covered)
    segments: List[Segment] = []
    for m in sorted(mappings, key=lambda m: m.start):
        if not m.path or m.path.startswith("["):
            continue
        for lo, hi in _subtract(m.start, m.end, covered):
            data = files.contents(m.path)
            if data is None:
                continue
            offset = m.offset + (lo - m.start)
            length = min(hi - lo, len(data) - offset)
            if length > 0:
                segments.append((lo, memoryview(data)[offset : offset + length], 0))
    return segments


# --------------------------------------------------------------------------
# Cores


def _overlaps_file(start: int, end: int, mappings: List[FileMapping]) -> bool:
    return any(m.start < end and start < m.end for m in mappings)


def core_image(core: CoreFile, python: Optional[str] = None) -> MemoryImage:
    """The memory image of a core file: what the core holds, plus the
    read-only parts of mapped files it leaves out, from the files.

    Raises NotPythonError, UnsupportedPythonError or BadInputError.
    """
    files = FileCache(python=python)
    warnings: List[str] = []
    if not core.files:
        raise BadInputError(
            f"{core.path!r} has no NT_FILE note (the list of mapped files): "
            "cannot find the interpreter in it"
        )
    interpreter = find_interpreter(core.files, files.elf, warnings)
    view = memoryview(core.data)
    segments: List[Segment] = []
    covered = []
    memory = 0
    for seg in core.loads:
        if seg.filesz == 0:
            continue
        end = seg.vaddr + seg.filesz
        flags = SEG_WRITABLE if seg.flags & PF_W else 0
        if _overlaps_file(seg.vaddr, end, core.files):
            flags |= SEG_FILE
        segments.append((seg.vaddr, view[seg.offset : seg.offset + seg.filesz], flags))
        covered.append((seg.vaddr, end))
        memory += seg.filesz
    segments += file_segments(core.files, covered, files)
    return MemoryImage(
        segments=segments,
        mappings=core.files,
        interpreter=interpreter,
        memory_bytes=memory,
        warnings=warnings,
        resources=[view, *files.opened],
    )
