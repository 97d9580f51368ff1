"""ELF: the symbols we call, without loading the target's libraries here."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import (
    Dict,
    Iterable,
    List,
    Optional,
    Tuple,
)


@dataclass
class ElfImage:
    """What we need from an ELF file: its dynamic symbols and load segments."""

    machine: int
    symbols: Dict[str, int]
    #: (p_vaddr, p_offset, p_filesz) of each PT_LOAD segment.
    loads: List[Tuple[int, int, int]]

    def load_bias(self, first_page: int) -> int:
        """Runtime address minus link-time address, given the mapped offset 0."""
        lowest = min((vaddr - offset for vaddr, offset, _ in self.loads), default=0)
        return first_page - (lowest & ~0xFFF)


ELF_X86_64 = 62
ELF_AARCH64 = 183


def read_elf(path: str, wanted: Iterable[str]) -> Optional[ElfImage]:
    """The *wanted* dynamic symbols of the 64-bit little-endian ELF *path*.

    None if the file is not such an ELF file.  Only ``.dynsym`` is read: the
    functions we call are exported, and it is small.
    """
    wanted = set(wanted)
    try:
        with open(path, "rb") as f:
            header = f.read(64)
            if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
                return None
            machine = struct.unpack_from("<H", header, 0x12)[0]
            phoff, shoff = struct.unpack_from("<QQ", header, 0x20)
            phentsize, phnum, shentsize, shnum = struct.unpack_from(
                "<HHHH", header, 0x36
            )
            loads = []
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for i in range(phnum):
                p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(
                    "<IIQQQQ", table, i * phentsize
                )
                if p_type == 1:  # PT_LOAD
                    loads.append((p_vaddr, p_offset, p_filesz))
            f.seek(shoff)
            sections = f.read(shentsize * shnum)
            symbols: Dict[str, int] = {}
            for i in range(shnum):
                fields = struct.unpack_from("<IIQQQQII", sections, i * shentsize)
                if fields[1] != 11:  # SHT_DYNSYM
                    continue
                offset, size, link = fields[4], fields[5], fields[6]
                strtab = struct.unpack_from("<IIQQQQ", sections, link * shentsize)
                f.seek(strtab[4])
                names = f.read(strtab[5])
                f.seek(offset)
                table = f.read(size)
                for j in range(0, size - 23, 24):
                    name, _, _, shndx, value = struct.unpack_from("<IBBHQ", table, j)
                    if shndx == 0 or not value:
                        continue  # undefined here
                    end = names.find(b"\0", name)
                    text = names[name:end].decode("ascii", "replace")
                    if text in wanted and text not in symbols:
                        symbols[text] = value
            return ElfImage(machine, symbols, loads)
    except (OSError, struct.error, ValueError, IndexError):
        return None


def read_elf_bytes(path: str, image: ElfImage, vaddr: int, size: int) -> bytes:
    """*size* bytes of *path* at link-time address *vaddr* (b"" if unmapped)."""
    for seg_vaddr, seg_offset, seg_filesz in image.loads:
        if seg_vaddr <= vaddr and vaddr + size <= seg_vaddr + seg_filesz:
            try:
                with open(path, "rb") as f:
                    f.seek(seg_offset + vaddr - seg_vaddr)
                    return f.read(size)
            except OSError:
                return b""
    return b""
