"""Core dumps: their load segments, mapped files and process notes.

The ELF reading itself (headers, segments, notes, the symbols of
executables and libraries) is `pyleakhunt.process.elf`, shared with
``pyleakhunt attach``; this module reads what only a core holds.  A
truncated or damaged file raises :class:`ElfError` with one clear sentence.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from dataclasses import dataclass, field
from typing import List, Optional

from ..process import elf
from ..process.elf import (
    EHDR_SIZE,
    ET_CORE,
    NT_FILE,
    NT_PRPSINFO,
    PT_LOAD,
    PT_NOTE,
    TYPES,
    Segment,
    iter_notes,
    open_for_reading,
    parse_header,
    parse_segments,
)
from .errors import BadInputError


class ElfError(BadInputError):
    """The file is not a usable ELF core; the message says why.

    Raised for what `pyleakhunt.process.elf` finds wrong too (its own
    ElfError), so that the census reports it as bad input.
    """


@dataclass(frozen=True)
class FileMapping:
    """A file mapped into the process: ``[start, end)`` shows the file's
    bytes from ``offset`` on."""

    start: int
    end: int
    offset: int
    path: str


@dataclass
class ProcessInfo:
    """What the core's NT_PRPSINFO note says about the process."""

    pid: Optional[int] = None
    name: str = ""
    args: str = ""


def parse_nt_file(desc: bytes) -> List[FileMapping]:
    """The file mappings of an NT_FILE note: a count and a page size, then
    (start, end, offset in pages) per mapping, then the paths."""
    if len(desc) < 16:
        return []
    count, page_size = struct.unpack_from("<QQ", desc)
    table_end = 16 + count * 24
    if count > len(desc) // 24 or table_end > len(desc):
        return []
    paths = desc[table_end:].split(b"\0")
    mappings = []
    for i in range(count):
        start, end, pages = struct.unpack_from("<QQQ", desc, 16 + i * 24)
        path = paths[i].decode("utf-8", "surrogateescape") if i < len(paths) else ""
        mappings.append(FileMapping(start, end, pages * page_size, path))
    return mappings


def parse_prpsinfo(desc: bytes) -> ProcessInfo:
    """pid, name and arguments from an x86-64 NT_PRPSINFO note."""
    if len(desc) < 136:
        return ProcessInfo()
    pid = struct.unpack_from("<i", desc, 24)[0]
    name = desc[40:56].split(b"\0")[0].decode("utf-8", "replace")
    args = desc[56:136].split(b"\0")[0].decode("utf-8", "replace").strip()
    return ProcessInfo(pid=pid, name=name, args=args)


@dataclass
class CoreFile:
    """An ELF core file, mapped read-only."""

    path: str
    size: int
    data: mmap.mmap
    loads: List[Segment]
    files: List[FileMapping] = field(default_factory=list)
    process: ProcessInfo = field(default_factory=ProcessInfo)

    def close(self) -> None:
        """Unmaps the file (fails if buffers still point into it)."""
        self.data.close()


def open_core(path: str) -> CoreFile:
    """Maps the core file at *path* and reads its headers and notes.

    Raises ElfError if it is not an x86-64 ELF core, or if it is shorter
    than its headers say (a dump cut short by a full disk or a size limit).
    """
    what = f"{path!r}"
    try:
        fd = open_for_reading(path, what)
    except elf.ElfError as exc:
        raise ElfError(str(exc)) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ElfError(f"{what} is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise ElfError(f"{what} is not a regular file")
        size = info.st_size
        if size == 0:
            raise ElfError(f"{what} is empty")
        data = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    except OSError as exc:
        raise ElfError(f"{what} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        return _read_core(path, what, size, data)
    except elf.ElfError as exc:
        data.close()
        raise ElfError(str(exc)) from None
    except BaseException:
        data.close()
        raise


def _read_core(path: str, what: str, size: int, data: mmap.mmap) -> CoreFile:
    header = parse_header(data[:EHDR_SIZE], what)
    if header.type != ET_CORE:
        kind = TYPES.get(header.type, f"type {header.type}")
        raise ElfError(f"{what} is an ELF {kind}, not a core file")
    segments = parse_segments(data, header, what)
    needed = max((s.offset + s.filesz for s in segments), default=0)
    if needed > size:
        raise ElfError(
            f"{what} is truncated: it has {size:,} bytes of the {needed:,} "
            "its headers describe"
        )
    core = CoreFile(path, size, data, [s for s in segments if s.type == PT_LOAD])
    for note in (s for s in segments if s.type == PT_NOTE):
        for note_type, name, desc in iter_notes(
            data[note.offset : note.offset + note.filesz]
        ):
            if note_type == NT_FILE and name == b"CORE":
                core.files = parse_nt_file(desc)
            elif note_type == NT_PRPSINFO and name == b"CORE":
                core.process = parse_prpsinfo(desc)
    return core
