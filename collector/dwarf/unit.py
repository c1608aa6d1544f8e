"""One compile unit of .debug_info: its header, and a single walk over its DIEs that keeps only
what function start lines need.

Kept per unit: every ``DW_TAG_subprogram``'s decl line, decl file and the DIE it refers to
(``DW_AT_abstract_origin`` or ``DW_AT_specification``: a concrete copy of an inline function,
or a C++ method defined outside its class); every function with code and its address ranges;
and, inside each, the ``DW_TAG_inlined_subroutine`` scopes with their depth and origin.
Types, variables and everything else are skipped, most in one step (``Abbrev.skip``).

``DW_AT_sibling`` is never followed (a self-referencing sibling hung pyelftools): the walk is
one pass over the unit's bytes, each DIE at least one byte, so it ends at the unit's end; it
also stops at ``max_dies`` and checks the clock every 4096 DIEs.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.dwarf import forms as F
from collector.dwarf.forms import (
    SKIP_LEB,
    SKIP_STRING,
    Abbrev,
    DwarfBudgetExceeded,
    DwarfError,
    cstring_end,
    read_form,
    uleb,
)

Ranges = list[tuple[int, int]]
# (start, end) address ranges of a DIE; resolves DW_AT_ranges through .debug_ranges/rnglists.
RangeReader = Callable[["Unit", int, int], Ranges]
AddrReader = Callable[["Unit", int], int]  # DW_FORM_addrx index -> address (.debug_addr)


@dataclass(slots=True)
class Header:
    offset: int  # of the unit in .debug_info
    end: int  # one past its last byte
    version: int
    unit_type: int
    offset_size: int
    address_size: int
    abbrev_offset: int
    first_die: int  # offset of the root DIE in .debug_info

    @property
    def sizes(self) -> tuple[int, int, int]:
        ref_addr = self.address_size if self.version == 2 else self.offset_size
        return self.offset_size, self.address_size, ref_addr


def parse_header(data: bytes, offset: int, endian: str) -> Header:
    """The header of the unit at ``offset``; ``data`` holds at least its first 24 bytes (or
    to the end of the section)."""
    try:
        length = struct.unpack_from(endian + "I", data, 0)[0]
        pos, osz = 4, 4
        if length == 0xFFFFFFFF:
            length, pos, osz = struct.unpack_from(endian + "Q", data, 4)[0], 12, 8
        elif length >= 0xFFFFFFF0:
            raise DwarfError(f"reserved unit length {length:#x}")
        end = offset + pos + length
        version = struct.unpack_from(endian + "H", data, pos)[0]
        pos += 2
        if not 2 <= version <= 5:
            raise DwarfError(f"DWARF version {version}")
        ofmt = endian + ("I" if osz == 4 else "Q")
        unit_type = 1
        if version == 5:
            unit_type, asz = data[pos], data[pos + 1]
            abbrev = struct.unpack_from(ofmt, data, pos + 2)[0]
            pos += 2 + osz
            if unit_type in (2, 6):  # type units: signature and type offset
                pos += 8 + osz
            elif unit_type in (4, 5):  # skeleton and split units: dwo id
                pos += 8
        else:
            abbrev = struct.unpack_from(ofmt, data, pos)[0]
            asz = data[pos + osz]
            pos += osz + 1
    except (IndexError, struct.error) as e:
        raise DwarfError(f"unit header at {offset:#x} is truncated") from e
    if asz not in (4, 8):
        raise DwarfError(f"unit at {offset:#x}: address size {asz}")
    if offset + pos > end:
        raise DwarfError(f"unit at {offset:#x} is shorter than its header")
    return Header(offset, end, version, unit_type, osz, asz, abbrev, offset + pos)


@dataclass(slots=True)
class Function:
    """A function with code: its DIE and the inlined calls inside it."""

    die: int  # offset of its DW_TAG_subprogram
    # (start, end, depth, origin DIE offset), one per range of each inlined call
    inlined: list[tuple[int, int, int, int]] = field(default_factory=list)


@dataclass(slots=True)
class Unit:
    header: Header
    comp_dir: tuple[int, int] = (0, -1)  # (form, value) of DW_AT_comp_dir
    comp_path: str = ""  # ... and the string it names
    stmt_list: int = -1
    low_pc: int = 0  # the unit's base address for range lists
    addr_base: int = 8
    str_offsets_base: int = 8
    rnglists_base: int = -1
    ranges: Ranges = field(default_factory=list)  # the unit's own (root DIE) ranges
    # subprogram DIE offset -> (decl line, decl file index, referenced DIE offset or -1)
    decls: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    functions: list[Function] = field(default_factory=list)
    spans: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, function)
    dies: int = 0


_INTERESTING = (F.TAG_SUBPROGRAM, F.TAG_INLINED_SUBROUTINE)
_ROOTS = (F.TAG_COMPILE_UNIT, F.TAG_PARTIAL_UNIT)
_ADDRX = frozenset((F.F_ADDRX, F.F_ADDRX1, F.F_ADDRX2, F.F_ADDRX3, F.F_ADDRX4, F.F_GNU_ADDR_INDEX))
_LOCAL_REFS = frozenset((F.F_REF1, F.F_REF2, F.F_REF4, F.F_REF8, F.F_REF_UDATA))
_CLASS_ADDRESS = frozenset((F.F_ADDR, *_ADDRX))


def walk(
    data: bytes,
    base: int,
    header: Header,
    abbrevs: dict[int, Abbrev],
    endian: str,
    ranges: RangeReader,
    addrx: AddrReader,
    *,
    root_only: bool = False,
    max_dies: int = 2_000_000,
    deadline: float = float("inf"),
) -> Unit:
    """Walk the unit whose bytes are ``data`` (``data[0]`` is .debug_info offset ``base``).
    ``root_only`` reads the root DIE alone (the unit's ranges, for the address index)."""
    try:
        return _walk(
            data, base, header, abbrevs, endian, ranges, addrx, root_only, max_dies, deadline
        )
    except (IndexError, struct.error, KeyError, OverflowError) as e:
        raise DwarfError(f"unit at {header.offset:#x}: {type(e).__name__} {e}") from e


def _walk(
    data: bytes,
    base: int,
    header: Header,
    abbrevs: dict[int, Abbrev],
    endian: str,
    ranges: RangeReader,
    addrx: AddrReader,
    root_only: bool,
    max_dies: int,
    deadline: float,
) -> Unit:
    unit = Unit(header)
    sizes = header.sizes
    # code -> (tag, children, keep, plan); a plan of one fixed skip is that int alone
    table = {}
    for code, ab in abbrevs.items():
        keep = ab.tag in _INTERESTING or ab.tag in _ROOTS
        plan = ab.plan(sizes, keep)
        one = plan[0] if len(plan) == 1 and type(plan[0]) is int and plan[0] > 0 else None
        table[code] = (ab.tag, ab.children, keep, one if one is not None else plan)
    pos, end = header.first_die - base, header.end - base
    if end > len(data):
        raise DwarfError(f"unit at {header.offset:#x} runs past .debug_info")
    depth = 0
    owners: list[tuple[int, int]] = []  # (depth, function index) of enclosing functions
    inlined_depths: list[int] = []  # depths of the enclosing inlined calls
    while pos < end:
        die_off = base + pos
        code = data[pos]
        if code < 0x80:
            pos += 1
        else:
            code, pos = uleb(data, pos, end)
        if code == 0:
            depth -= 1
            if depth < 0:
                break  # padding after the root's children
            continue
        unit.dies += 1
        if unit.dies & 0xFFF == 0:
            if unit.dies > max_dies:
                raise DwarfError(f"unit at {header.offset:#x} has over {max_dies} DIEs")
            if time.monotonic() > deadline:
                raise DwarfBudgetExceeded(f"unit at {header.offset:#x}: time budget")
        entry = table.get(code)
        if entry is None:
            raise DwarfError(f"unit at {header.offset:#x}: no abbreviation {code}")
        tag, children, keep, plan = entry
        if owners and owners[-1][0] >= depth:
            while owners and owners[-1][0] >= depth:
                owners.pop()
        if inlined_depths and inlined_depths[-1] >= depth:
            while inlined_depths and inlined_depths[-1] >= depth:
                inlined_depths.pop()
        if type(plan) is int:  # most DIEs: types, variables, parameters of fixed size
            pos += plan
            if pos > end:
                raise DwarfError(f"DIE at {die_off:#x} runs past its unit")
            if children:
                depth += 1
            elif depth == 0:
                break
            continue
        attrs: dict[int, tuple[int, int]] = {}
        for step in plan:
            if type(step) is int:
                if step > 0:
                    pos += step
                elif step == SKIP_LEB:
                    while data[pos] & 0x80:
                        pos += 1
                    pos += 1
                elif step == SKIP_STRING:
                    pos = cstring_end(data, pos, end) + 1
                else:  # SKIP_BLOCK: a ULEB128 length, then that many bytes
                    n, pos = uleb(data, pos, end)
                    pos += n
            else:
                attr, form, const = step  # type: ignore[misc]
                value, pos = read_form(data, pos, end, form, const, sizes, endian)
                attrs[attr] = (form, value)
        if pos > end:
            raise DwarfError(f"DIE at {die_off:#x} runs past its unit")
        if keep:
            if tag in _ROOTS:
                if depth:
                    pass  # a unit DIE below the root: not a scope

                _root(unit, attrs, ranges, addrx)
                if root_only:
                    return unit
            elif tag == F.TAG_SUBPROGRAM:
                _subprogram(unit, die_off, depth, attrs, owners, ranges, addrx)
            elif owners:  # an inlined call inside a function with code
                fn = unit.functions[owners[-1][1]]
                origin = _ref(unit, attrs.get(F.AT_ABSTRACT_ORIGIN))
                level = len(inlined_depths) + 1
                for lo, hi in _pc_ranges(unit, attrs, ranges, addrx):
                    fn.inlined.append((lo, hi, level, origin))
                inlined_depths.append(depth)
        if children:
            depth += 1
        elif depth == 0:
            break  # a root without children
    unit.spans.sort()
    return unit


def _root(unit: Unit, attrs: dict, ranges: RangeReader, addrx: AddrReader) -> None:
    get = attrs.get
    if v := get(F.AT_ADDR_BASE):
        unit.addr_base = v[1]
    if v := get(F.AT_STR_OFFSETS_BASE):
        unit.str_offsets_base = v[1]
    if v := get(F.AT_RNGLISTS_BASE):
        unit.rnglists_base = v[1]
    if v := get(F.AT_STMT_LIST):
        unit.stmt_list = v[1]
    if v := get(F.AT_COMP_DIR):
        unit.comp_dir = v
    low = get(F.AT_LOW_PC)
    if low is not None:
        unit.low_pc = addrx(unit, low[1]) if low[0] in _ADDRX else low[1]
    unit.ranges = _pc_ranges(unit, attrs, ranges, addrx)


def _subprogram(
    unit: Unit,
    die_off: int,
    depth: int,
    attrs: dict,
    owners: list[tuple[int, int]],
    ranges: RangeReader,
    addrx: AddrReader,
) -> None:
    line = attrs.get(F.AT_DECL_LINE, (0, 0))[1]
    file = attrs.get(F.AT_DECL_FILE, (0, -1))[1]
    origin = _ref(unit, attrs.get(F.AT_ABSTRACT_ORIGIN) or attrs.get(F.AT_SPECIFICATION))
    unit.decls[die_off] = (line, file, origin)
    spans = _pc_ranges(unit, attrs, ranges, addrx)
    if spans:
        index = len(unit.functions)
        unit.functions.append(Function(die_off))
        unit.spans.extend((lo, hi, index) for lo, hi in spans)
        owners.append((depth, index))


def _ref(unit: Unit, value: tuple[int, int] | None) -> int:
    if value is None:
        return -1
    form, v = value
    if form in _LOCAL_REFS:
        return unit.header.offset + v
    if form == F.F_REF_ADDR:
        return v
    return -1  # type signatures, supplementary and dwz files are not followed


def _pc_ranges(unit: Unit, attrs: dict, ranges: RangeReader, addrx: AddrReader) -> Ranges:
    low = attrs.get(F.AT_LOW_PC)
    high = attrs.get(F.AT_HIGH_PC)
    if low is not None and high is not None:
        lo = addrx(unit, low[1]) if low[0] in _ADDRX else low[1]
        if high[0] in _CLASS_ADDRESS:
            hi = addrx(unit, high[1]) if high[0] in _ADDRX else high[1]
        else:
            hi = lo + high[1]  # DWARF 4+: high_pc as an offset from low_pc
        return [(lo, hi)] if hi > lo else []
    rng = attrs.get(F.AT_RANGES)
    if rng is not None:
        return ranges(unit, rng[0], rng[1])
    return []
