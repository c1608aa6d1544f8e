"""Where a Go binary's tables are: ``.gopclntab``, the text start and ``go:func.*``.

The line table is found by section name (``.gopclntab``, or ``.data.rel.ro.gopclntab`` in some
PIE builds), else by the ``runtime.pclntab`` symbol, else (no section headers) by searching the
read-only PT_LOAD segments for the magic and a header whose offsets fit. The runtime's
``firstmoduledata`` (found by its first word, the table's address) gives what the header lacks:
the text start since Go 1.26 and the ``go:func.*`` base of the inlining trees in stripped
binaries. Its layout changed with versions, so the field is chosen by the build info's version
and checked against the segments before it is used.
"""

from __future__ import annotations

import struct

from collector.elf import ElfReader
from collector.gosym.buildinfo import GoSymError
from collector.gosym.pclntab import MAGICS

_PF_X, _PF_W = 1, 2
_CHUNK = 4 << 20
_MAX_TABLE = 256 << 20
_MAX_SCAN = 256 << 20
SECTIONS = (".gopclntab", ".data.rel.ro.gopclntab")
_MAGIC_BYTES = tuple(struct.pack("<I", m) + b"\0\0" for m in MAGICS)
# Word index of moduledata.text (stable since Go 1.16) and of gofunc by version: 1.18-1.19,
# 1.20-1.25 (covctrs added), 1.26+ (typedesclen, itaboffset, itabsize added).
_TEXT_WORD = 22
_GOFUNC_WORDS = {(1, 18): (38,), (1, 20): (40,), (1, 26): (43, 40)}


def _gofunc_words(version: tuple[int, int]) -> tuple[int, ...]:
    if version == (0, 0):
        return (40, 43, 38)
    best: tuple[int, ...] = ()
    for since, words in sorted(_GOFUNC_WORDS.items()):
        if version >= since:
            best = words
    return best


def find_table(elf: ElfReader) -> tuple[int, int, int]:
    """(file offset, byte length, link-time address) of the line table; GoSymError if none."""
    for name in SECTIONS:
        sec = elf.section(name)
        if sec is not None and sec.size >= 8:
            return sec.offset, min(sec.size, _MAX_TABLE), sec.addr
    addr = symbol_address(elf, ("runtime.pclntab",)) if elf.section_list else None
    if addr is not None:
        for seg in elf.loads:
            if seg.vaddr <= addr < seg.vaddr + seg.filesz:
                off = addr - seg.vaddr + seg.offset
                return off, min(seg.offset + seg.filesz - off, _MAX_TABLE), addr
    # Read-only segments first; a relocated (PIE) table may sit in the RELRO one.
    for writable in (False, True):
        found = _search(elf, writable)
        if found is not None:
            return found
    raise GoSymError("no Go line table (no .gopclntab, no magic in the data segments)")


def _search(elf: ElfReader, writable: bool) -> tuple[int, int, int] | None:
    scanned = 0
    for seg in elf.loads:
        if seg.flags & _PF_X or bool(seg.flags & _PF_W) != writable or not seg.filesz:
            continue
        pos, end = seg.offset, seg.offset + seg.filesz
        while pos < end and scanned < _MAX_SCAN:
            size = min(_CHUNK, end - pos)
            chunk = elf.read(pos, size, "segment searched for the Go line table")
            scanned += size
            for magic in _MAGIC_BYTES:
                at = chunk.find(magic)
                while at >= 0:
                    off = pos + at
                    if off % 8 == 0 and _plausible(elf, off, end):
                        return off, min(end - off, _MAX_TABLE), seg.vaddr + off - seg.offset
                    at = chunk.find(magic, at + 1)
            if size <= 8:
                break
            pos += size - 8
    return None


def _plausible(elf: ElfReader, off: int, end: int) -> bool:
    head = elf.read(off, min(72, end - off), "Go line table header")
    if len(head) < 64 or head[6] not in (1, 2, 4) or head[7] != 8:
        return False
    magic = struct.unpack_from("<I", head)[0]
    n = 8 if MAGICS[magic] >= (1, 18) else 7
    words = struct.unpack_from(f"<{n}Q", head, 8)
    nfunc, offsets = words[0], words[-5:]
    return 0 < nfunc < 4_000_000 and all(0 < o < end - off for o in offsets)


def find_moduledata(elf: ElfReader, table_vaddr: int, funcname_off: int) -> bytes | None:
    """The runtime's first moduledata (its first 64 words), or None when it is not found.

    Its first word is the table's address and its second the function name table's, which
    pins it among the writable segments' words."""
    want = struct.pack("<QQ", table_vaddr, table_vaddr + funcname_off)
    scanned = 0
    for seg in elf.loads:
        if not seg.flags & _PF_W or not seg.filesz:
            continue
        pos, end = seg.offset, seg.offset + seg.filesz
        while pos < end and scanned < _MAX_SCAN:
            size = min(_CHUNK, end - pos)
            chunk = elf.read(pos, size, "segment searched for moduledata")
            scanned += size
            at = chunk.find(want)
            while at >= 0:
                if (pos + at) % 8 == 0 and pos + at + 512 <= end:
                    return elf.read(pos + at, 512, "moduledata")
                at = chunk.find(want, at + 1)
            if size <= 16:
                break
            pos += size - 16
    return None


def moduledata_text(md: bytes) -> int:
    return struct.unpack_from("<Q", md, 8 * _TEXT_WORD)[0]


def moduledata_gofunc(elf: ElfReader, md: bytes, version: tuple[int, int]) -> int | None:
    """go:func.*, the first candidate field that points into a read-only segment."""
    for w in _gofunc_words(version):
        v = struct.unpack_from("<Q", md, 8 * w)[0]
        rodata = struct.unpack_from("<Q", md, 8 * (w - 1))[0]
        for seg in elf.loads:
            if seg.flags & (_PF_W | _PF_X):
                continue
            if rodata <= v and seg.vaddr <= v < seg.vaddr + seg.filesz:
                return v
    return None


def symbol_address(elf: ElfReader, names: tuple[str, ...]) -> int | None:
    """A symbol's address from .symtab (any type), for unstripped binaries."""
    sec = elf.section(".symtab")
    if sec is None or sec.entsize != 24 or not 0 < sec.link < len(elf.section_list):
        return None
    strtab = elf.section_list[sec.link]
    want = {n.encode() for n in names}
    syms = elf.section_data(sec)
    strs = elf.section_data(strtab)
    for i in range(0, len(syms) - 23, 24):
        name_off, _info, _other, _shndx, value, _size = struct.unpack_from("<IBBHQQ", syms, i)
        if name_off >= len(strs):
            continue
        end = strs.find(b"\0", name_off, name_off + 64)
        if end >= 0 and strs[name_off:end] in want:
            return value
    return None
