"""A small ELF reader over a file descriptor: headers, segments, sections and notes.

Everything past the program headers is controlled by whoever wrote the file, and the collector
reads, as root, every binary any user maps. So every offset and size is checked against the
file's size (from ``fstat`` when the reader is made) before anything is read or allocated, every
read counts against a per-reader byte budget, and every loop is bounded by the data it walks.
A claimed 1 TiB section costs one comparison.

Errors come in two kinds. ``ElfError`` (and its ``BudgetExceeded``) is the only exception the
parsers raise for bad bytes; a problem that still leaves something usable (broken section
headers, a note past the end of the file) is appended to ``problems`` instead, so the caller
can fall back (e.g. to the dynamic segment) and still report the binary as malformed once.

Reads use ``os.pread`` (no shared seek position, so a pinned descriptor can be shared) and never
``mmap``: a mapped file that another process truncates would kill the collector with SIGBUS.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass

PT_LOAD = 1
PT_DYNAMIC = 2
PT_NOTE = 4
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_NOTE = 7
SHT_NOBITS = 8
SHT_DYNSYM = 11
SHF_COMPRESSED = 0x800
NT_GNU_BUILD_ID = 3
NT_GO_BUILD_ID = 4
SHN_XINDEX = 0xFFFF
_MAX_NOTES = 64 * 1024  # notes larger than this are not build-id notes worth reading
_MAX_PHDR_BYTES = 64 * 1024  # Linux refuses to exec a file with more (load_elf_phdrs)
_MAX_SECTIONS = 8192  # linked executables have tens; beyond this the headers are not trusted
_MAX_SECTION_NAMES = 1 << 20
_MAX_GNU_BUILD_ID = 64  # bytes; ld writes 20 (sha1) or 16 (md5/uuid)
_MAX_GO_BUILD_ID = 256  # characters; the Go linker writes about 83


class ElfError(ValueError):
    """Not an ELF file, or a truncated/corrupt one: the only error the parsers raise."""


class NotElf(ElfError):
    """No ELF magic at all (a JIT region in a memfd, a data file mapped executable)."""


class BudgetExceeded(ElfError):
    """A per-binary budget ran out; what was read before it is still good."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-binary budgets. ``max_read_bytes`` covers every read of one reader (headers, notes,
    symbol and string tables); ``max_symbols`` the symbol entries walked; ``max_seconds`` the
    time spent loading one binary's symbols."""

    max_read_bytes: int = 64 << 20
    max_symbols: int = 1_000_000
    max_seconds: float = 2.0


@dataclass(frozen=True, slots=True)
class Segment:
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int = 0


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int
    flags: int = 0
    index: int = 0


class ElfReader:
    """Parsed headers of one ELF file; ``fd`` stays owned by the caller.

    Raises ``ElfError`` when the file is not a regular file, not ELF, or its program headers
    are unusable (without them no address can be mapped). Section header trouble is recorded
    in ``problems`` and leaves ``section_list`` empty.
    """

    def __init__(self, fd: int, limits: Limits | None = None) -> None:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ElfError("not a regular file")
        self.fd = fd
        self.size = st.st_size
        self.limits = limits or Limits()
        self.bytes_read = 0
        self.problems: list[str] = []
        ident = self.read(0, min(64, self.size), "ELF header")
        if len(ident) < 52 or ident[:4] != b"\x7fELF":
            raise NotElf("not an ELF file")
        if ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise ElfError(f"unknown ELF class {ident[4]} or byte order {ident[5]}")
        self.is64 = ident[4] == 2
        if self.is64 and len(ident) < 64:
            raise ElfError("truncated ELF header")
        self.endian = "<" if ident[5] == 1 else ">"
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
        ) = struct.unpack_from(self.endian + layout, ident, 16)
        self.segments = self._read_segments(phoff, phentsize, phnum)
        self.loads = tuple(s for s in self.segments if s.type == PT_LOAD)
        try:
            self.section_list = self._read_sections(shoff, shentsize, shnum, shstrndx)
        except ElfError as e:
            self.problems.append(f"section headers: {e}")
            self.section_list = []
        self.sections: dict[str, Section] = {}
        for sec in self.section_list:
            self.sections.setdefault(sec.name, sec)

    # ---- reading ---------------------------------------------------------------------
    def read(self, offset: int, size: int, what: str = "data") -> bytes:
        """``size`` bytes at ``offset``, all of them inside the file and the read budget."""
        if offset < 0 or size < 0 or offset > self.size or size > self.size - offset:
            raise ElfError(
                f"{what} ({size:#x} bytes at {offset:#x}) lies outside the file "
                f"({self.size:#x} bytes)"
            )
        if size > self.limits.max_read_bytes - self.bytes_read:
            raise BudgetExceeded(
                f"{what}: {size:#x} bytes would pass the read budget of "
                f"{self.limits.max_read_bytes:#x} bytes per binary"
            )
        self.bytes_read += size
        data = os.pread(self.fd, size, offset)
        if len(data) != size:  # the file shrank after fstat: its bytes cannot be trusted
            raise ElfError(f"{what}: file changed size while being read")
        return data

    def remaining_budget(self) -> int:
        return self.limits.max_read_bytes - self.bytes_read

    # ---- headers -----------------------------------------------------------------------
    def _read_segments(self, off: int, entsize: int, num: int) -> tuple[Segment, ...]:
        if not num:
            return ()
        need = 56 if self.is64 else 32
        if entsize < need:
            raise ElfError(f"program header entry size {entsize} (needs {need})")
        if entsize * num > _MAX_PHDR_BYTES:
            raise ElfError(f"{num} program headers of {entsize} bytes (more than the kernel runs)")
        data = self.read(off, entsize * num, "program headers")
        out = []
        for i in range(num):
            if self.is64:
                t, fl, o, va, _pa, fs, ms, al = struct.unpack_from(
                    self.endian + "IIQQQQQQ", data, i * entsize
                )
            else:
                t, o, va, _pa, fs, ms, fl, al = struct.unpack_from(
                    self.endian + "IIIIIIII", data, i * entsize
                )
            out.append(Segment(t, fl, o, va, fs, ms, al))
        return tuple(out)

    def _read_sections(self, off: int, entsize: int, num: int, strndx: int) -> list[Section]:
        if not off:
            return []  # no section headers at all (sstrip-ed): nothing to report
        need = 64 if self.is64 else 40
        if entsize < need:
            raise ElfError(f"section header entry size {entsize} (needs {need})")
        fmt = self.endian + ("IIQQQQIIQQ" if self.is64 else "IIIIIIIIII")
        first = struct.unpack(fmt, self.read(off, need, "section header 0"))
        if num == 0:
            num = first[5]  # more than 0xff00 sections: the count is in section 0's sh_size
        if strndx == SHN_XINDEX:
            strndx = first[6]  # ... and the name table's index in its sh_link
        if num > _MAX_SECTIONS:
            raise ElfError(f"{num} sections (more than {_MAX_SECTIONS})")
        if not num:
            return []
        data = self.read(off, entsize * num, "section headers")
        raw = [struct.unpack_from(fmt, data, i * entsize) for i in range(num)]
        names = b""
        if 0 < strndx < num and raw[strndx][1] != SHT_NOBITS:
            s = raw[strndx]
            try:
                names = self.read(s[4], min(s[5], _MAX_SECTION_NAMES), "section names")
            except BudgetExceeded:
                raise
            except ElfError as e:
                self.problems.append(str(e))
        out: list[Section] = []
        for i, (nm, typ, fl, addr, off_, size, link, _info, _al, ent) in enumerate(raw):
            end = names.find(b"\0", nm, nm + 256)
            name = names[nm : end if end >= 0 else nm + 256].decode("utf-8", "replace")
            out.append(Section(name, typ, addr, off_, size, link, ent, fl, i))
        return out

    # ---- lookups -----------------------------------------------------------------------
    def section(self, name: str) -> Section | None:
        return self.sections.get(name)

    def section_data(self, sec: Section, limit: int | None = None) -> bytes:
        """The section's bytes (at most ``limit``); ElfError if they are not in the file."""
        if sec.type == SHT_NOBITS:
            return b""
        size = sec.size if limit is None else min(sec.size, limit)
        return self.read(sec.offset, size, sec.name or f"section {sec.index}")

    def file_offset_to_vaddr(self, file_offset: int) -> int | None:
        """The link-time virtual address of a file offset, via the PT_LOAD that holds it (None
        past the top of the 64-bit address space, where a hostile p_vaddr can put it)."""
        for s in self.loads:
            if s.offset <= file_offset < s.offset + max(s.filesz, 1):
                vaddr = file_offset - s.offset + s.vaddr
                return vaddr if vaddr < 1 << 64 else None
        return None

    def vaddr_to_file_offset(self, vaddr: int) -> int | None:
        """Where the bytes of link-time address ``vaddr`` are in the file (PT_LOAD file part)."""
        for s in self.loads:
            if s.vaddr <= vaddr < s.vaddr + s.filesz:
                return vaddr - s.vaddr + s.offset
        return None

    # ---- notes -------------------------------------------------------------------------
    def notes(self) -> list[tuple[bytes, int, bytes]]:
        """(name, type, desc) of every note, from PT_NOTE segments (or SHT_NOTE sections)."""
        spans = [(s.offset, s.filesz, s.align) for s in self.segments if s.type == PT_NOTE]
        if not spans:
            spans = [(s.offset, s.size, 4) for s in self.section_list if s.type == SHT_NOTE]
        out = []
        for off, size, align in spans:
            try:
                data = self.read(off, min(size, _MAX_NOTES), "notes")
            except BudgetExceeded:
                raise
            except ElfError as e:
                self.problems.append(str(e))
                continue
            pad = 7 if align == 8 else 3  # .note.gnu.property segments are 8-aligned
            pos = 0
            while pos + 12 <= len(data):  # each step moves >= 12 bytes: bounded by the data
                namesz, descsz, ntype = struct.unpack_from(self.endian + "III", data, pos)
                pos += 12
                desc_at = (pos + namesz + pad) & ~pad  # aligned in the segment, not the note
                if desc_at + descsz > len(data):
                    self.problems.append(f"a note at {off + pos - 12:#x} runs past its segment")
                    break
                name = data[pos : pos + namesz].rstrip(b"\0")
                desc = data[desc_at : desc_at + descsz]
                pos = (desc_at + descsz + pad) & ~pad
                out.append((name, ntype, desc))
        return out

    def build_id(self) -> str:
        """Hex GNU build id; else the Go build id (as its text); else "".

        A build id names the binary in every profile, so one that no linker writes (too long,
        or a Go id that is not plain text) is dropped and recorded as a problem."""
        go = ""
        for name, ntype, desc in self.notes():
            if name == b"GNU" and ntype == NT_GNU_BUILD_ID:
                if 0 < len(desc) <= _MAX_GNU_BUILD_ID:
                    return desc.hex()
                self.problems.append(f"GNU build id of {len(desc)} bytes")
            elif name == b"Go" and ntype == NT_GO_BUILD_ID and not go:
                if 0 < len(desc) <= _MAX_GO_BUILD_ID and all(33 <= c < 127 for c in desc):
                    go = desc.decode("ascii")
                else:
                    self.problems.append("Go build id is not short printable text")
        return go
