"""DWARF 2-5 primitives: LEB128, attribute forms and abbreviation tables, bounds-checked.

Every reader takes ``(data, pos, end)`` and raises ``DwarfError`` instead of reading past
``end``; a LEB128 longer than 10 bytes (more than 64 bits) is refused rather than decoded
without bound. Python's own bounds checks (IndexError, struct.error) are turned into
``DwarfError`` by the unit walker, so a missed check still cannot read outside the buffer.
"""

from __future__ import annotations

import struct

from collector.elf import ElfError

# Tags and attributes the decl-line reader looks at.
TAG_COMPILE_UNIT = 0x11
TAG_PARTIAL_UNIT = 0x3C
TAG_SUBPROGRAM = 0x2E
TAG_INLINED_SUBROUTINE = 0x1D
TAG_LEXICAL_BLOCK = 0x0B
TAG_NAMESPACE = 0x39
AT_SIBLING = 0x01
AT_STMT_LIST = 0x10
AT_LOW_PC = 0x11
AT_HIGH_PC = 0x12
AT_COMP_DIR = 0x1B
AT_ABSTRACT_ORIGIN = 0x31
AT_DECL_FILE = 0x3A
AT_DECL_LINE = 0x3B
AT_SPECIFICATION = 0x47
AT_RANGES = 0x55
AT_STR_OFFSETS_BASE = 0x72
AT_ADDR_BASE = 0x73
AT_RNGLISTS_BASE = 0x74
WANTED = frozenset(
    (
        AT_STMT_LIST,
        AT_LOW_PC,
        AT_HIGH_PC,
        AT_COMP_DIR,
        AT_ABSTRACT_ORIGIN,
        AT_DECL_FILE,
        AT_DECL_LINE,
        AT_SPECIFICATION,
        AT_RANGES,
        AT_STR_OFFSETS_BASE,
        AT_ADDR_BASE,
        AT_RNGLISTS_BASE,
    )
)
KEEP_SIBLING = frozenset((AT_SIBLING,))
KEEP_ALL = WANTED | KEEP_SIBLING

# Forms.
F_ADDR, F_BLOCK2, F_BLOCK4, F_DATA2, F_DATA4, F_DATA8, F_STRING = 0x01, 0x03, 0x04, 5, 6, 7, 8
F_BLOCK, F_BLOCK1, F_DATA1, F_FLAG, F_SDATA, F_STRP, F_UDATA = 0x09, 0x0A, 0x0B, 0x0C, 0xD, 0xE, 0xF
F_REF_ADDR, F_REF1, F_REF2, F_REF4, F_REF8, F_REF_UDATA = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15
F_INDIRECT, F_SEC_OFFSET, F_EXPRLOC, F_FLAG_PRESENT = 0x16, 0x17, 0x18, 0x19
F_STRX, F_ADDRX, F_REF_SUP4, F_STRP_SUP, F_DATA16, F_LINE_STRP = 0x1A, 0x1B, 0x1C, 0x1D, 0x1E, 0x1F
F_REF_SIG8, F_IMPLICIT_CONST, F_LOCLISTX, F_RNGLISTX, F_REF_SUP8 = 0x20, 0x21, 0x22, 0x23, 0x24
F_STRX1, F_STRX2, F_STRX3, F_STRX4 = 0x25, 0x26, 0x27, 0x28
F_ADDRX1, F_ADDRX2, F_ADDRX3, F_ADDRX4 = 0x29, 0x2A, 0x2B, 0x2C
F_GNU_ADDR_INDEX, F_GNU_STR_INDEX, F_GNU_REF_ALT, F_GNU_STRP_ALT = 0x1F01, 0x1F02, 0x1F20, 0x1F21

# Fixed sizes; 0 means "offset size" (4 or 8) and -1 "address size", resolved per unit.
_FIXED = {
    F_DATA1: 1, F_REF1: 1, F_FLAG: 1, F_STRX1: 1, F_ADDRX1: 1,
    F_DATA2: 2, F_REF2: 2, F_STRX2: 2, F_ADDRX2: 2,
    F_STRX3: 3, F_ADDRX3: 3,
    F_DATA4: 4, F_REF4: 4, F_STRX4: 4, F_ADDRX4: 4, F_REF_SUP4: 4,
    F_DATA8: 8, F_REF8: 8, F_REF_SIG8: 8, F_REF_SUP8: 8,
    F_DATA16: 16, F_FLAG_PRESENT: 0x100, F_IMPLICIT_CONST: 0x100,
    F_STRP: 0, F_LINE_STRP: 0, F_SEC_OFFSET: 0, F_STRP_SUP: 0, F_GNU_REF_ALT: 0,
    F_GNU_STRP_ALT: 0, F_ADDR: -1,
}  # fmt: skip
_LEB_FORMS = frozenset((F_SDATA, F_UDATA, F_REF_UDATA, F_STRX, F_ADDRX, F_LOCLISTX, F_RNGLISTX))
_LEB_FORMS |= {F_GNU_ADDR_INDEX, F_GNU_STR_INDEX}
_MAX_ABBREVS = 1 << 16  # per table; compilers emit hundreds
_MAX_ATTRS = 256  # per abbreviation; DWARF defines about 130 attributes
_MAX_INDIRECT = 4


class DwarfError(ElfError):
    """Malformed or unsupported DWARF: the one error of collector/dwarf."""


class DwarfBudgetExceeded(DwarfError):
    """A time or byte budget ran out; what was read before it stays good."""


def uleb(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise DwarfError("LEB128 runs past its data or over 64 bits")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def sleb(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise DwarfError("LEB128 runs past its data or over 64 bits")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return (value - (1 << shift) if b & 0x40 else value), pos


def cstring_end(data: bytes, pos: int, end: int) -> int:
    """Offset of the NUL that ends the string at ``pos``."""
    nul = data.find(b"\0", pos, end)
    if nul < 0:
        raise DwarfError("string runs past its data")
    return nul


def fixed(data: bytes, pos: int, size: int, end: int, endian: str) -> int:
    if size > end - pos or pos < 0:
        raise DwarfError("value runs past its data")
    if size == 1:
        return data[pos]
    if size == 3:
        b = data[pos : pos + 3]
        return int.from_bytes(b, "little" if endian == "<" else "big")
    return struct.unpack_from(endian + {2: "H", 4: "I", 8: "Q"}[size], data, pos)[0]


# Plan steps for attributes that are only skipped: a positive int skips that many bytes.
SKIP_LEB, SKIP_STRING, SKIP_BLOCK = -1, -2, -3


class Abbrev:
    """One abbreviation: the tag, whether children follow, and its (attribute, form, const)
    specs, compiled per unit's sizes into a ``plan``: consecutive fixed-size attributes merge
    into one byte count, LEB128s, strings and blocks are stepped over, and only the attributes
    in ``keep`` stay (attribute, form, const) to be decoded. A DIE of a type or a variable is
    then a few steps instead of one call per attribute."""

    __slots__ = ("_plans", "children", "specs", "tag")

    def __init__(self, tag: int, children: bool, specs: tuple[tuple[int, int, int], ...]) -> None:
        self.tag, self.children, self.specs = tag, children, specs
        self._plans: dict[tuple, tuple[int | tuple[int, int, int], ...]] = {}

    def plan(
        self, sizes: tuple[int, int, int], keep: frozenset[int]
    ) -> tuple[int | tuple[int, int, int], ...]:
        key = (sizes, keep)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._plans[key] = self._compile(sizes, keep)
        return plan

    def _compile(
        self, sizes: tuple[int, int, int], keep: frozenset[int]
    ) -> tuple[int | tuple[int, int, int], ...]:
        osz, asz, rsz = sizes
        out: list[int | tuple[int, int, int]] = []
        for spec in self.specs:
            attr, form, _const = spec
            size = rsz if form == F_REF_ADDR else _FIXED.get(form)
            step: int | tuple[int, int, int]
            if attr in keep:
                step = spec
            elif size is not None:
                step = osz if size == 0 else asz if size == -1 else size & 0xFF
                if step == 0:
                    continue  # flag_present, implicit_const: no bytes
            elif form in _LEB_FORMS:
                step = SKIP_LEB
            elif form == F_STRING:
                step = SKIP_STRING
            elif form in (F_BLOCK, F_EXPRLOC):
                step = SKIP_BLOCK
            else:
                step = spec  # block1/2/4, indirect, unknown: read_form handles (or refuses)
            last = out[-1] if out else None
            if isinstance(step, int) and step > 0 and isinstance(last, int) and last > 0:
                out[-1] = last + step
                continue
            out.append(step)
        return tuple(out)


def parse_abbrevs(data: bytes, pos: int, end: int) -> dict[int, Abbrev]:
    """The abbreviation table starting at ``pos`` (bounded by its data and by count)."""
    table: dict[int, Abbrev] = {}
    while True:
        code, pos = uleb(data, pos, end)
        if code == 0:
            return table
        if len(table) >= _MAX_ABBREVS:
            raise DwarfError(f"more than {_MAX_ABBREVS} abbreviations in one table")
        tag, pos = uleb(data, pos, end)
        if pos >= end:
            raise DwarfError("abbreviation runs past .debug_abbrev")
        children = data[pos] != 0
        pos += 1
        specs = []
        while True:
            attr, pos = uleb(data, pos, end)
            form, pos = uleb(data, pos, end)
            if attr == 0 and form == 0:
                break
            const = 0
            if form == F_IMPLICIT_CONST:
                const, pos = sleb(data, pos, end)
            if len(specs) >= _MAX_ATTRS:
                raise DwarfError(f"abbreviation {code} has more than {_MAX_ATTRS} attributes")
            specs.append((attr, form, const))
        table[code] = Abbrev(tag, children, tuple(specs))


def read_form(
    data: bytes,
    pos: int,
    end: int,
    form: int,
    const: int,
    sizes: tuple[int, int, int],
    endian: str,
) -> tuple[int, int]:
    """(value, next pos); ``sizes`` is the unit's (offset, address, DW_FORM_ref_addr) sizes.
    Strings and blocks are skipped: the value is the string's offset (F_STRING) or 0
    (blocks); only numbers, offsets, references and indexes are used."""
    osz, asz, rsz = sizes
    for _ in range(_MAX_INDIRECT):
        size = rsz if form == F_REF_ADDR else _FIXED.get(form)
        if size is not None:
            if size == 0x100:
                return (1 if form == F_FLAG_PRESENT else const), pos
            n = osz if size == 0 else asz if size == -1 else size
            if n == 16:
                if pos + 16 > end:
                    raise DwarfError("data16 runs past its data")
                return 0, pos + 16
            return fixed(data, pos, n, end, endian), pos + n
        if form in _LEB_FORMS:
            return sleb(data, pos, end) if form == F_SDATA else uleb(data, pos, end)
        if form == F_STRING:
            return pos, cstring_end(data, pos, end) + 1
        if form in (F_BLOCK, F_EXPRLOC, F_BLOCK1, F_BLOCK2, F_BLOCK4):
            if form in (F_BLOCK, F_EXPRLOC):
                n, pos = uleb(data, pos, end)
            else:
                w = {F_BLOCK1: 1, F_BLOCK2: 2, F_BLOCK4: 4}[form]
                n, pos = fixed(data, pos, w, end, endian), pos + w
            if n > end - pos:
                raise DwarfError("block runs past its data")
            return 0, pos + n
        if form == F_INDIRECT:
            form, pos = uleb(data, pos, end)
            continue
        raise DwarfError(f"unknown attribute form {form:#x}")
    raise DwarfError("DW_FORM_indirect chain too long")
