"""Reading ELF files: core dumps, and the symbols of executables and libraries.

Only what the census needs, with the standard library's ``struct``: the
64-bit little-endian ELF of Linux x86-64.  Every offset and size read from
a file is checked against the file's length before use, so a truncated or
damaged file raises :class:`ElfError` with one clear sentence.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from .errors import BadInputError

ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
ET_EXEC, ET_DYN, ET_CORE = 2, 3, 4
EM_X86_64 = 62
PT_LOAD, PT_NOTE = 1, 4
PF_X, PF_W, PF_R = 1, 2, 4
SHT_SYMTAB, SHT_DYNSYM = 2, 11
NT_PRPSINFO = 3
NT_FILE = 0x46494C45

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_NOTE = struct.Struct("<III")

#: Names of the machines people are likely to bring a core from.
MACHINES = {
    3: "x86 (32-bit)",
    8: "MIPS",
    20: "PowerPC",
    21: "PowerPC64",
    22: "s390",
    40: "ARM (32-bit)",
    62: "x86-64",
    183: "AArch64 (arm64)",
    243: "RISC-V",
}

_TYPES = {0: "none", 1: "relocatable", 2: "executable", 3: "shared object", 4: "core"}


class ElfError(BadInputError):
    """The file is not a usable ELF file; the message says why."""


@dataclass(frozen=True)
class Segment:
    """A program header of type PT_LOAD or PT_NOTE."""

    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int


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


@dataclass
class Header:
    """The parts of an ELF header the census checks."""

    type: int
    machine: int
    phoff: int
    phnum: int
    phentsize: int
    shoff: int
    shnum: int
    shentsize: int


def parse_header(data: bytes, what: str) -> Header:
    """Checks that *data* starts a 64-bit little-endian x86-64 ELF file."""
    if len(data) < 4 or data[:4] != ELF_MAGIC:
        raise ElfError(f"{what} is not an ELF file")
    if len(data) < _EHDR.size:
        raise ElfError(f"{what} is truncated: its ELF header is cut short")
    fields = _EHDR.unpack_from(data)
    ident = fields[0]
    machine = fields[2]
    if ident[4] != ELFCLASS64 or machine != EM_X86_64:
        arch = MACHINES.get(machine, f"machine {machine}")
        if ident[4] != ELFCLASS64 and machine == EM_X86_64:
            arch = "x86-64 (32-bit ELF)"
        raise ElfError(f"{what} is for {arch}; only x86-64 is supported")
    if ident[5] != ELFDATA2LSB:
        raise ElfError(f"{what} is big-endian; only x86-64 is supported")
    return Header(
        type=fields[1],
        machine=machine,
        phoff=fields[5],
        phnum=fields[10],
        phentsize=fields[9],
        shoff=fields[6],
        shnum=fields[12],
        shentsize=fields[11],
    )


def parse_segments(data: bytes, header: Header, what: str) -> List[Segment]:
    """The program headers of the file whose bytes are *data*."""
    end = header.phoff + header.phnum * _PHDR.size
    if header.phnum and (header.phentsize != _PHDR.size or end > len(data)):
        raise ElfError(f"{what} is truncated: its program headers are cut short")
    segments = []
    for i in range(header.phnum):
        p_type, flags, offset, vaddr, _, filesz, memsz, align = _PHDR.unpack_from(
            data, header.phoff + i * _PHDR.size
        )
        segments.append(Segment(p_type, flags, offset, vaddr, filesz, memsz, align))
    return segments


def _align4(value: int) -> int:
    return (value + 3) & ~3


def iter_notes(data: bytes) -> Iterable[Tuple[int, bytes, bytes]]:
    """(type, name, description) of each note in *data*; stops at the first
    note that does not fit."""
    pos = 0
    while pos + _NOTE.size <= len(data):
        namesz, descsz, note_type = _NOTE.unpack_from(data, pos)
        name_at = pos + _NOTE.size
        desc_at = name_at + _align4(namesz)
        end = desc_at + _align4(descsz)
        if desc_at + descsz > len(data):
            return
        yield (
            note_type,
            bytes(data[name_at : name_at + namesz]).rstrip(b"\0"),
            bytes(data[desc_at : desc_at + descsz]),
        )
        pos = end


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


def _open_for_reading(path: str, what: str) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise ElfError(f"{what} does not exist") from None
    except IsADirectoryError:
        raise ElfError(f"{what} is a directory") from None
    except PermissionError:
        raise ElfError(f"{what} is not readable (permission denied)") from None
    except OSError as exc:
        raise ElfError(f"{what} cannot be opened: {exc.strerror}") from None


def open_core(path: str) -> CoreFile:
    """Maps the core file at *path* and reads its headers and notes.

    Raises ElfError if it is not an x86-64 ELF core, or if it is shorter
    than its headers say (a dump cut short by a full disk or a size limit).
    """
    what = f"{path!r}"
    fd = _open_for_reading(path, what)
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
    except BaseException:
        data.close()
        raise


def _read_core(path: str, what: str, size: int, data: mmap.mmap) -> CoreFile:
    header = parse_header(data[: _EHDR.size], what)
    if header.type != ET_CORE:
        kind = _TYPES.get(header.type, f"type {header.type}")
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


@dataclass
class Symbol:
    """An ELF symbol: its address (before relocation) and size."""

    value: int
    size: int


class ElfFile:
    """An executable or shared library: its segments, symbols and soname.

    Reads the whole file once; Python's interpreters are a few megabytes.
    """

    def __init__(self, path: str) -> None:
        what = f"{path!r}"
        fd = _open_for_reading(path, what)
        try:
            with os.fdopen(fd, "rb", closefd=True) as f:
                self.data = f.read()
        except OSError as exc:
            raise ElfError(f"{what} cannot be read: {exc.strerror}") from None
        self.path = path
        header = parse_header(self.data, what)
        if header.type not in (ET_EXEC, ET_DYN):
            raise ElfError(f"{what} is not an executable or a shared library")
        self.header = header
        self.segments = parse_segments(self.data, header, what)
        self._symbols: Optional[Dict[str, Symbol]] = None

    @property
    def loads(self) -> List[Segment]:
        """The PT_LOAD segments."""
        return [s for s in self.segments if s.type == PT_LOAD]

    def load_bias(self, mapped_at: int) -> int:
        """How far the file was moved, given the address its first byte
        (file offset 0) was mapped at: add it to a symbol's value."""
        first = min(self.loads, key=lambda s: s.offset, default=None)
        if first is None:
            return mapped_at
        return mapped_at - (first.vaddr - first.offset)

    def read_vaddr(self, vaddr: int, size: int) -> Optional[bytes]:
        """The *size* bytes the file puts at *vaddr* (unrelocated), or None."""
        for seg in self.loads:
            if seg.vaddr <= vaddr and vaddr + size <= seg.vaddr + seg.filesz:
                start = seg.offset + (vaddr - seg.vaddr)
                if start + size <= len(self.data):
                    return self.data[start : start + size]
        return None

    def _sections(self) -> List[Tuple[int, int, int, int, int]]:
        """(type, offset, size, link, entsize) of every section header."""
        h = self.header
        if h.shoff == 0 or h.shentsize != _SHDR.size:
            return []
        if h.shoff + h.shnum * _SHDR.size > len(self.data):
            return []
        sections = []
        for i in range(h.shnum):
            fields = _SHDR.unpack_from(self.data, h.shoff + i * _SHDR.size)
            sections.append((fields[1], fields[4], fields[5], fields[6], fields[9]))
        return sections

    def symbols(self) -> Dict[str, Symbol]:
        """Defined symbols of .dynsym and, when not stripped, .symtab."""
        if self._symbols is not None:
            return self._symbols
        found: Dict[str, Symbol] = {}
        sections = self._sections()
        for sh_type, offset, size, link, entsize in sections:
            if sh_type not in (SHT_DYNSYM, SHT_SYMTAB) or entsize != _SYM.size:
                continue
            if link >= len(sections) or offset + size > len(self.data):
                continue
            _, str_offset, str_size, _, _ = sections[link]
            strings = self.data[str_offset : str_offset + str_size]
            for st_name, _, _, shndx, value, sym_size in _SYM.iter_unpack(
                self.data[offset : offset + size - size % _SYM.size]
            ):
                if shndx == 0 or value == 0 or st_name >= len(strings):
                    continue
                end = strings.find(b"\0", st_name)
                name = strings[st_name:end].decode("ascii", "replace")
                found.setdefault(name, Symbol(value, sym_size))
        self._symbols = found
        return found
