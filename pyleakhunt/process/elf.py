"""Reading ELF files: the headers, segments and symbols of executables,
shared libraries and core files.

Shared by ``pyleakhunt attach`` (the addresses of the functions gdb calls,
on x86-64 and AArch64) and the census (x86-64 cores and interpreters).
Only the 64-bit little-endian ELF of Linux, with the standard library's
``struct``.  Every offset and size read from a file is checked against the
file's length before use, so a truncated or damaged file raises
:class:`ElfError` with one clear sentence.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Collection, Dict, Iterable, List, Optional, Tuple

ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
ET_EXEC, ET_DYN, ET_CORE = 2, 3, 4
EM_X86_64 = 62
EM_AARCH64 = 183
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
#: Bytes of a 64-bit ELF header.
EHDR_SIZE = _EHDR.size

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

TYPES = {0: "none", 1: "relocatable", 2: "executable", 3: "shared object", 4: "core"}


class ElfError(Exception):
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


def parse_header(
    data: bytes, what: str, machines: Collection[int] = (EM_X86_64,)
) -> Header:
    """Checks that *data* starts a 64-bit little-endian ELF file for one of
    *machines* (x86-64 unless told otherwise)."""
    if len(data) < 4 or data[:4] != ELF_MAGIC:
        raise ElfError(f"{what} is not an ELF file")
    if len(data) < _EHDR.size:
        raise ElfError(f"{what} is truncated: its ELF header is cut short")
    fields = _EHDR.unpack_from(data)
    ident = fields[0]
    machine = fields[2]
    supported = " and ".join(MACHINES[m] for m in machines)
    if ident[4] != ELFCLASS64 or machine not in machines:
        arch = MACHINES.get(machine, f"machine {machine}")
        if ident[4] != ELFCLASS64 and machine == EM_X86_64:
            arch = "x86-64 (32-bit ELF)"
        raise ElfError(f"{what} is for {arch}; only {supported} is supported")
    if ident[5] != ELFDATA2LSB:
        raise ElfError(f"{what} is big-endian; only {supported} is supported")
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


def open_for_reading(path: str, what: str) -> int:
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


@dataclass
class Symbol:
    """An ELF symbol: its address (before relocation) and size."""

    value: int
    size: int


class ElfFile:
    """An executable or shared library: its segments, symbols and soname.

    Reads the whole file once; Python's interpreters are a few megabytes.
    """

    def __init__(self, path: str, machines: Collection[int] = (EM_X86_64,)) -> None:
        what = f"{path!r}"
        fd = open_for_reading(path, what)
        try:
            with os.fdopen(fd, "rb", closefd=True) as f:
                self.data = f.read()
        except OSError as exc:
            raise ElfError(f"{what} cannot be read: {exc.strerror}") from None
        self.path = path
        header = parse_header(self.data, what, machines)
        if header.type not in (ET_EXEC, ET_DYN):
            raise ElfError(f"{what} is not an executable or a shared library")
        self.header = header
        self.segments = parse_segments(self.data, header, what)
        self._symbols: Optional[Dict[str, Symbol]] = None

    @property
    def machine(self) -> int:
        """``e_machine``: `EM_X86_64`, `EM_AARCH64`..."""
        return self.header.machine

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
        if self._symbols is None:
            self._symbols = self._read_symbols((SHT_DYNSYM, SHT_SYMTAB), None)
        return self._symbols

    def dynamic_symbols(self, wanted: Iterable[str]) -> Dict[str, Symbol]:
        """The *wanted* symbols among the defined ones of .dynsym.

        Quicker than `symbols` (a few milliseconds instead of a few hundred
        for an unstripped libpython): the functions attach calls are
        exported, and no other name is decoded.
        """
        return self._read_symbols((SHT_DYNSYM,), {n.encode() for n in wanted})

    def _read_symbols(
        self, types: Tuple[int, ...], wanted: Optional[Collection[bytes]]
    ) -> Dict[str, Symbol]:
        """Defined symbols of the tables of *types* (all, or the *wanted*)."""
        found: Dict[str, Symbol] = {}
        sections = self._sections()
        for sh_type, offset, size, link, entsize in sections:
            if sh_type not in types or entsize != _SYM.size:
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
                raw = strings[st_name:end]
                if wanted is not None and raw not in wanted:
                    continue
                name = raw.decode("ascii", "replace")
                found.setdefault(name, Symbol(value, sym_size))
        return found
