"""Where ``.dynsym`` lies according to the dynamic segment, for binaries whose section
headers are broken or missing.

The dynamic loader never reads section headers, so a binary that runs has a usable PT_DYNAMIC:
``DT_SYMTAB``/``DT_STRTAB``/``DT_STRSZ`` give the tables (as link-time addresses, mapped to file
offsets through PT_LOAD), and the symbol count comes from ``DT_HASH`` (its nchain) or
``DT_GNU_HASH`` (one past the last symbol any bucket chain reaches).
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass

from collector.elf.reader import PT_DYNAMIC, ElfError, ElfReader

DT_NULL = 0
DT_HASH = 4
DT_STRTAB = 5
DT_SYMTAB = 6
DT_STRSZ = 10
DT_SYMENT = 11
DT_GNU_HASH = 0x6FFFFEF5
_MAX_DYNAMIC_ENTRIES = 4096  # real ones have about 30
_MAX_BUCKETS = 1 << 22
_CHAIN_CHUNK = 1024  # hash chain words read at a time


@dataclass(frozen=True, slots=True)
class SymbolSpan:
    """A symbol table in the file: ``count`` entries of ``entsize`` bytes at ``offset``, names
    in ``strsize`` bytes at ``stroffset``."""

    source: str
    offset: int
    count: int
    entsize: int
    stroffset: int
    strsize: int


def dynamic_symbols(elf: ElfReader) -> SymbolSpan | None:
    """The span of the dynamic symbol table, None when there is no PT_DYNAMIC (a static
    binary); ElfError when there is one but it does not describe a usable table."""
    seg = next((s for s in elf.segments if s.type == PT_DYNAMIC), None)
    if seg is None:
        return None
    ent = 16 if elf.is64 else 8
    size = min(seg.filesz, _MAX_DYNAMIC_ENTRIES * ent)
    data = elf.read(seg.offset, size - size % ent, "PT_DYNAMIC")
    tags: dict[int, int] = {}
    for tag, val in struct.iter_unpack(elf.endian + ("qQ" if elf.is64 else "iI"), data):
        if tag == DT_NULL:
            break
        tags.setdefault(tag, val)
    symentsize = 24 if elf.is64 else 16
    missing = [n for t, n in ((DT_SYMTAB, "DT_SYMTAB"), (DT_STRTAB, "DT_STRTAB")) if t not in tags]
    if missing:
        raise ElfError(f"PT_DYNAMIC has no {' or '.join(missing)}")
    if tags.get(DT_SYMENT, symentsize) != symentsize:
        raise ElfError(f"DT_SYMENT {tags[DT_SYMENT]} (needs {symentsize})")
    symoff = _offset(elf, tags[DT_SYMTAB], "DT_SYMTAB")
    stroff = _offset(elf, tags[DT_STRTAB], "DT_STRTAB")
    strsize = tags.get(DT_STRSZ, 0)
    if DT_GNU_HASH in tags:
        count = _gnu_hash_count(elf, _offset(elf, tags[DT_GNU_HASH], "DT_GNU_HASH"))
    elif DT_HASH in tags:
        hoff = _offset(elf, tags[DT_HASH], "DT_HASH")
        _nbucket, count = struct.unpack(elf.endian + "II", elf.read(hoff, 8, "DT_HASH"))
    elif stroff > symoff:  # no hash table: ld puts .dynstr right after .dynsym
        count = (stroff - symoff) // symentsize
    else:
        raise ElfError("PT_DYNAMIC has neither DT_GNU_HASH nor DT_HASH")
    if not strsize:
        strsize = max(0, elf.size - stroff)
    return SymbolSpan("PT_DYNAMIC", symoff, count, symentsize, stroff, strsize)


def _offset(elf: ElfReader, vaddr: int, what: str) -> int:
    off = elf.vaddr_to_file_offset(vaddr)
    if off is None:
        raise ElfError(f"{what} {vaddr:#x} is in no PT_LOAD segment")
    return off


def _words(elf: ElfReader, offset: int, count: int, what: str) -> array:
    words = array("I", elf.read(offset, 4 * count, what))
    if (elf.endian == "<") != (struct.pack("=I", 1) == b"\x01\0\0\0"):
        words.byteswap()
    return words


def _gnu_hash_count(elf: ElfReader, off: int) -> int:
    """Symbols covered by a GNU hash table: one past the end of the chain of the highest
    bucket. The walk is bounded by the file and by the symbol budget."""
    nbuckets, symoffset, bloom_size, _shift = struct.unpack(
        elf.endian + "IIII", elf.read(off, 16, "DT_GNU_HASH header")
    )
    if nbuckets > _MAX_BUCKETS:
        raise ElfError(f"DT_GNU_HASH claims {nbuckets} buckets")
    buckets_off = off + 16 + bloom_size * (8 if elf.is64 else 4)
    buckets = _words(elf, buckets_off, nbuckets, "DT_GNU_HASH buckets")
    last = max(buckets, default=0)
    if last < symoffset:
        return symoffset  # every bucket empty: only the unhashed symbols before symoffset
    pos = buckets_off + 4 * nbuckets + 4 * (last - symoffset)
    index = last
    limit = elf.limits.max_symbols
    while index - last < limit:
        n = min(_CHAIN_CHUNK, (elf.size - pos) // 4)
        if n <= 0:
            raise ElfError("DT_GNU_HASH chain runs past the end of the file")
        for word in _words(elf, pos, n, "DT_GNU_HASH chain"):
            if word & 1:  # the low bit ends a bucket's chain
                return index + 1
            index += 1
        pos += 4 * n
    return index  # longer than the symbol budget: the loader reads the first part
