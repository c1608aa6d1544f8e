"""A small ELF reader over a file descriptor: headers, PT_LOAD segments, sections, notes,
and function symbols.

It reads with ``os.pread`` so the descriptor can be a pinned one shared by threads (no seek
position), and it reads only what it needs (headers, notes, symbol tables), never the whole
file. Both ELF classes and byte orders are handled since the formats only differ in widths.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

PT_LOAD = 1
PT_NOTE = 4
SHT_SYMTAB = 2
SHT_NOTE = 7
SHT_DYNSYM = 11
SHT_NOBITS = 8
STT_FUNC = 2
STT_GNU_IFUNC = 10
_FUNC_TYPES = (STT_FUNC, STT_GNU_IFUNC)
NT_GNU_BUILD_ID = 3
NT_GO_BUILD_ID = 4
_MAX_NOTES = 64 * 1024  # notes larger than this are not build-id notes worth reading


class ElfError(ValueError):
    """Not an ELF file, or a truncated/corrupt one."""


@dataclass(frozen=True, slots=True)
class Segment:
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int


class ElfReader:
    """Parsed headers of one ELF file; ``fd`` stays owned by the caller."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        ident = self.read(0, 64)
        if len(ident) < 52 or ident[:4] != b"\x7fELF":
            raise ElfError("not an ELF file")
        self.is64 = ident[4] == 2
        self.endian = "<" if ident[5] == 1 else ">"
        e = self.endian
        # e_type .. e_shstrndx; entry, phoff and shoff are pointer-sized.
        layout = "HHIQQQIHHHHHH" if self.is64 else "HHIIIIIHHHHHH"
        (
            self.type,
            self.machine,
            _v,
            self.entry,
            phoff,
            shoff,
            _f,
            _eh,
            phentsize,
            phnum,
            shentsize,
            shnum,
            shstrndx,
        ) = struct.unpack_from(e + layout, ident, 16)
        self.segments = self._read_segments(phoff, phentsize, phnum)
        self.section_list = self._read_sections(shoff, shentsize, shnum, shstrndx)
        self.sections: dict[str, Section] = {}
        for sec in self.section_list:
            self.sections.setdefault(sec.name, sec)
        self.loads = tuple(s for s in self.segments if s.type == PT_LOAD)

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)

    def _read_segments(self, off: int, entsize: int, num: int) -> tuple[Segment, ...]:
        if not off or not num:
            return ()
        data = self.read(off, entsize * num)
        out = []
        for i in range(num):
            if self.is64:
                t, fl, o, va, _pa, fs, ms, _al = struct.unpack_from(
                    self.endian + "IIQQQQQQ", data, i * entsize
                )
            else:
                t, o, va, _pa, fs, ms, fl, _al = struct.unpack_from(
                    self.endian + "IIIIIIII", data, i * entsize
                )
            out.append(Segment(t, fl, o, va, fs, ms))
        return tuple(out)

    def _read_sections(self, off: int, entsize: int, num: int, strndx: int) -> list[Section]:
        if not off or not num or entsize == 0:
            return []
        data = self.read(off, entsize * num)
        if len(data) < entsize * num:
            raise ElfError("truncated section headers")
        fmt = self.endian + ("IIQQQQIIQQ" if self.is64 else "IIIIIIIIII")
        raw = [struct.unpack_from(fmt, data, i * entsize) for i in range(num)]
        names = b""
        if strndx < num:
            names = self.read(raw[strndx][4], raw[strndx][5])
        out: list[Section] = []
        for nm, typ, _fl, addr, off_, size, link, _info, _al, ent in raw:
            end = names.find(b"\0", nm)
            name = names[nm : end if end >= 0 else None].decode("utf-8", "replace")
            out.append(Section(name, typ, addr, off_, size, link, ent))
        return out

    def section(self, name: str) -> Section | None:
        return self.sections.get(name)

    def section_data(self, sec: Section) -> bytes:
        if sec.type == SHT_NOBITS:
            return b""
        return self.read(sec.offset, sec.size)

    def file_offset_to_vaddr(self, file_offset: int) -> int | None:
        """The link-time virtual address of a file offset, via the PT_LOAD that holds it."""
        for s in self.loads:
            if s.offset <= file_offset < s.offset + max(s.filesz, 1):
                return file_offset - s.offset + s.vaddr
        return None

    def notes(self) -> list[tuple[bytes, int, bytes]]:
        """(name, type, desc) of every note, from PT_NOTE segments (or SHT_NOTE sections)."""
        spans = [(s.offset, s.filesz) for s in self.segments if s.type == PT_NOTE]
        if not spans:
            spans = [(s.offset, s.size) for s in self.section_list if s.type == SHT_NOTE]
        out = []
        for off, size in spans:
            data = self.read(off, min(size, _MAX_NOTES))
            pos = 0
            while pos + 12 <= len(data):
                namesz, descsz, ntype = struct.unpack_from(self.endian + "III", data, pos)
                pos += 12
                name = data[pos : pos + namesz].rstrip(b"\0")
                pos += (namesz + 3) & ~3
                desc = data[pos : pos + descsz]
                pos += (descsz + 3) & ~3
                out.append((name, ntype, desc))
        return out

    def build_id(self) -> str:
        """Hex GNU build id; else the Go build id (as its text); else ""."""
        go = ""
        for name, ntype, desc in self.notes():
            if name == b"GNU" and ntype == NT_GNU_BUILD_ID:
                return desc.hex()
            if name == b"Go" and ntype == NT_GO_BUILD_ID:
                go = desc.decode("ascii", "replace")
        return go

    def function_symbols(self) -> tuple[list[tuple[int, int, int, int]], bytes]:
        """Function symbols of .symtab (else .dynsym) as (value, size, name_offset, binding)
        plus the string table the name offsets point into."""
        for name in (".symtab", ".dynsym"):
            sec = self.sections.get(name)
            if sec is None or sec.type == SHT_NOBITS or sec.size == 0:
                continue
            if sec.link >= len(self.section_list):
                continue
            strsec = self.section_list[sec.link]
            syms = self._read_syms(sec)
            if syms:
                return syms, self.section_data(strsec)
        return [], b""

    def _read_syms(self, sec: Section) -> list[tuple[int, int, int, int]]:
        data = self.section_data(sec)
        out = []
        if self.is64:
            it = struct.iter_unpack(self.endian + "IBBHQQ", data[: len(data) // 24 * 24])
            for nm, info, _oth, shndx, value, size in it:
                t = info & 0xF
                if t in _FUNC_TYPES and shndx != 0 and value:
                    out.append((value, size, nm, info >> 4))
        else:
            it = struct.iter_unpack(self.endian + "IIIBBH", data[: len(data) // 16 * 16])
            for nm, value, size, info, _oth, shndx in it:
                t = info & 0xF
                if t in _FUNC_TYPES and shndx != 0 and value:
                    out.append((value, size, nm, info >> 4))
        return out
