"""Function symbols of one binary, from the best table that is intact, within its budgets.

Order: ``.symtab`` (all functions), else ``.dynsym`` via the section headers, else ``.dynsym``
via the dynamic segment (the headers may be broken while the binary still runs). A table that
fails a check is recorded in ``elf.problems`` and the next one is tried, so a corrupt
``.symtab`` degrades names to the exported ones instead of to none.

Budgets (``elf.limits``): at most ``max_symbols`` entries are walked, the symbol and string
tables are read only as far as the per-binary read budget allows, and the walk stops at the
time budget. What was read by then is used; ``LoadedSymbols.truncated`` says why it is partial.
"""

from __future__ import annotations

import struct
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from collector.elf.dynamic import SymbolSpan, dynamic_symbols
from collector.elf.reader import SHT_DYNSYM, SHT_STRTAB, SHT_SYMTAB, ElfError, ElfReader, Section
from collector.elf.symbols import SymbolTable

STT_FUNC = 2
STT_GNU_IFUNC = 10
_FUNC_TYPES = (STT_FUNC, STT_GNU_IFUNC)
_BIND_RANK = {1: 0, 2: 1, 0: 2}  # GLOBAL before WEAK before LOCAL when addresses collide
_CHUNK = 16384  # symbols per read, and between two looks at the clock


@dataclass(frozen=True, slots=True)
class LoadedSymbols:
    table: SymbolTable
    source: str  # ".symtab", ".dynsym", "PT_DYNAMIC"; "" when no table had functions
    truncated: str  # why only part of the table was read; "" when all of it


def load_function_symbols(
    elf: ElfReader, clock: Callable[[], float] = time.monotonic
) -> LoadedSymbols:
    deadline = clock() + elf.limits.max_seconds
    dynsym_read = False
    for typ in (SHT_SYMTAB, SHT_DYNSYM):
        sec = next((s for s in elf.section_list if s.type == typ), None)
        if sec is None or sec.size == 0:
            continue
        try:
            got = _read(elf, _section_span(elf, sec), deadline, clock)
        except ElfError as e:
            elf.problems.append(f"{sec.name or f'section {sec.index}'}: {e}")
            continue
        dynsym_read = dynsym_read or typ == SHT_DYNSYM
        if len(got.table):
            return got
    if not dynsym_read:  # the same table again through PT_DYNAMIC would add nothing
        try:
            span = dynamic_symbols(elf)
            if span is not None:
                got = _read(elf, span, deadline, clock)
                if len(got.table):
                    return got
        except ElfError as e:
            elf.problems.append(f"PT_DYNAMIC: {e}")
    return LoadedSymbols(SymbolTable.empty(), "", "")


def _section_span(elf: ElfReader, sec: Section) -> SymbolSpan:
    ent = 24 if elf.is64 else 16
    if sec.entsize not in (0, ent):
        raise ElfError(f"symbol entry size {sec.entsize} (needs {ent})")
    if not 0 < sec.link < len(elf.section_list) or sec.link == sec.index:
        raise ElfError(f"linked to section {sec.link}, which is not its string table")
    strsec = elf.section_list[sec.link]
    if strsec.type != SHT_STRTAB:
        raise ElfError(f"linked to section {sec.link} of type {strsec.type}, not a string table")
    return SymbolSpan(sec.name, sec.offset, sec.size // ent, ent, strsec.offset, strsec.size)


def _check_in_file(elf: ElfReader, offset: int, size: int, what: str) -> None:
    if offset < 0 or size < 0 or offset > elf.size or size > elf.size - offset:
        raise ElfError(
            f"{what} ({size:#x} bytes at {offset:#x}) lies outside the file ({elf.size:#x} bytes)"
        )


def _read(
    elf: ElfReader, span: SymbolSpan, deadline: float, clock: Callable[[], float]
) -> LoadedSymbols:
    # The claims are checked whole first: a table that does not fit the file is malformed,
    # whatever part of it the budgets would have read.
    _check_in_file(elf, span.offset, span.count * span.entsize, f"{span.source} symbols")
    _check_in_file(elf, span.stroffset, span.strsize, f"{span.source} string table")
    truncated = []
    budget = elf.remaining_budget()
    count = span.count
    cap = min(elf.limits.max_symbols, budget // span.entsize)
    if count > cap:
        truncated.append(f"{count} symbols, read the first {cap}")
        count = cap
    budget -= count * span.entsize
    strsize = span.strsize
    if strsize > budget:
        truncated.append(f"string table of {strsize} bytes, read the first {budget}")
        strsize = budget
    blob = elf.read(span.stroffset, strsize, f"{span.source} string table")
    packed: list[int] = []
    sizes, names = array("Q"), array("I")
    fmt = elf.endian + ("IBBHQQ" if elf.is64 else "IIIBBH")
    is64 = elf.is64
    nblob = len(blob)
    outside = 0
    for first in range(0, count, _CHUNK):
        if clock() > deadline:
            truncated.append(
                f"time budget of {elf.limits.max_seconds}s: read {first} of {count} symbols"
            )
            break
        n = min(_CHUNK, count - first)
        data = elf.read(span.offset + first * span.entsize, n * span.entsize, span.source)
        for fields in struct.iter_unpack(fmt, data):
            if is64:
                name, info, _other, shndx, value, size = fields
            else:
                name, value, size, info, _other, shndx = fields
            if (info & 0xF) not in _FUNC_TYPES or not shndx or not value:
                continue
            if name >= nblob:
                outside += 1
                continue
            packed.append((value << 36) | (_BIND_RANK.get(info >> 4, 3) << 32) | len(names))
            sizes.append(size)
            names.append(name)
    if outside and strsize == span.strsize:  # not a budget cut: the names point nowhere
        elf.problems.append(f"{span.source}: {outside} names outside the string table")
    table = SymbolTable.from_packed(packed, sizes, names, blob)
    return LoadedSymbols(table, span.source, "; ".join(truncated))
