"""One compile unit of .debug_info: its header, a skeleton walk that finds its functions with
code, and on demand the inlined calls inside one function and single DIEs by offset.

The skeleton walk looks at the unit's top level (and inside namespaces): each
``DW_TAG_subprogram`` with code gives its address ranges and where its subtree lies; every
other subtree (types, variables, class bodies, the functions' own bodies) is jumped over with
``DW_AT_sibling`` when the compiler wrote one (only forward, and only inside the unit: a
sibling that points back or out is ignored), else stepped over DIE by DIE. The body of a
function is walked only when an address in it is asked about (its ``DW_TAG_inlined_subroutine``
scopes, with depth and origin), and the DIEs that decl lines come from
(``DW_AT_abstract_origin``, ``DW_AT_specification``) are decoded one at a time by offset.

Every walk is one forward pass over bytes, each DIE at least one byte, so it ends; it also
stops at ``max_dies`` and checks the clock every 4096 DIEs.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.dwarf import forms as F
from collector.dwarf.forms import (
    KEEP_ALL,
    KEEP_SIBLING,
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
    """A function with code: its DIE, its subtree's bytes, and (once asked) its inlined calls."""

    die: int  # offset of its DW_TAG_subprogram in .debug_info
    body: int = -1  # offset of its first child (-1: none)
    end: int = -1  # one past its subtree
    # (start, end, depth, origin DIE offset), one per range of each inlined call
    inlined: list[tuple[int, int, int, int]] | None = None


@dataclass(slots=True)
class Unit:
    header: Header
    abbrevs: dict = field(default_factory=dict)  # code -> Abbrev (the unit's table)
    table: dict = field(default_factory=dict)  # code -> _Entry, compiled when first met
    comp_dir: tuple[int, int] = (0, -1)  # (form, value) of DW_AT_comp_dir
    comp_path: str = ""  # ... and the string it names
    stmt_list: int = -1
    low_pc: int = 0  # the unit's base address for range lists
    addr_base: int = 8
    str_offsets_base: int = 8
    rnglists_base: int = -1
    ranges: Ranges = field(default_factory=list)  # the unit's own (root DIE) ranges
    # DIE offset -> (decl line, decl file index, referenced DIE offset or -1), as decoded
    decls: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    functions: list[Function] = field(default_factory=list)
    spans: list[tuple[int, int, int]] = field(default_factory=list)  # (start, end, function)
    dies: int = 0


_ROOTS = (F.TAG_COMPILE_UNIT, F.TAG_PARTIAL_UNIT)
_ADDRX = frozenset((F.F_ADDRX, F.F_ADDRX1, F.F_ADDRX2, F.F_ADDRX3, F.F_ADDRX4, F.F_GNU_ADDR_INDEX))
_LOCAL_REFS = frozenset((F.F_REF1, F.F_REF2, F.F_REF4, F.F_REF8, F.F_REF_UDATA))
_CLASS_ADDRESS = frozenset((F.F_ADDR, *_ADDRX))
_KEPT_TAGS = (*_ROOTS, F.TAG_SUBPROGRAM, F.TAG_INLINED_SUBROUTINE)
_Entry = tuple  # (tag, has children, plan keeping only DW_AT_sibling, plan for this tag)
_Plan = tuple


def entry(unit: Unit, code: int) -> _Entry:
    """(tag, children, stepping plan, own plan) for ``code``, compiled once per unit; a plan
    that is one fixed skip is that int alone (most members, variables, parameters)."""
    ab = unit.abbrevs.get(code)
    if ab is None:
        raise DwarfError(f"unit at {unit.header.offset:#x}: no abbreviation {code}")
    own = KEEP_ALL if ab.tag in _KEPT_TAGS else KEEP_SIBLING
    sizes = unit.header.sizes
    out = unit.table[code] = (
        ab.tag,
        ab.children,
        _short(ab.plan(sizes, KEEP_SIBLING)),
        _short(ab.plan(sizes, own)),
    )
    return out


def _short(plan: _Plan) -> _Plan | int:
    if not plan:
        return 0
    if len(plan) == 1 and type(plan[0]) is int and plan[0] > 0:
        return plan[0]
    return plan


def _run(
    plan: _Plan, data: bytes, pos: int, end: int, sizes: tuple[int, int, int], endian: str
) -> tuple[dict[int, tuple[int, int]], int]:
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
            attr, form, const = step
            value, pos = read_form(data, pos, end, form, const, sizes, endian)
            attrs[attr] = (form, value)
    if pos > end:
        raise DwarfError("DIE runs past its unit")
    return attrs, pos


def _guarded(fn):  # type: ignore[no-untyped-def]
    """Python's own bounds checks (a missed one of ours) become DwarfError."""

    def run(*args, **kw):  # type: ignore[no-untyped-def]
        try:
            return fn(*args, **kw)
        except (IndexError, struct.error, KeyError, OverflowError, TypeError) as e:
            raise DwarfError(f"{fn.__name__}: {type(e).__name__} {e}") from e

    return run


class _Walk:
    """Shared state of one pass: the bytes, the unit, the budgets."""

    __slots__ = ("addrx", "base", "data", "deadline", "endian", "max_dies", "ranges", "unit")

    def __init__(self, data, base, unit, endian, ranges, addrx, max_dies, deadline):  # type: ignore[no-untyped-def]
        self.data, self.base, self.unit, self.endian = data, base, unit, endian
        self.ranges, self.addrx, self.max_dies, self.deadline = ranges, addrx, max_dies, deadline

    def code(self, pos: int, end: int) -> tuple[int, int]:
        unit = self.unit
        c = self.data[pos]
        if c < 0x80:
            pos += 1
        else:
            c, pos = uleb(self.data, pos, end)
        if c:
            unit.dies += 1
            if unit.dies & 0xFFF == 0:
                if unit.dies > self.max_dies:
                    raise DwarfError(f"unit at {unit.header.offset:#x}: over {self.max_dies} DIEs")
                if time.monotonic() > self.deadline:
                    raise DwarfBudgetExceeded(f"unit at {unit.header.offset:#x}: time budget")
        return c, pos

    def sibling(self, attrs: dict, pos: int, end: int) -> int:
        """The sibling's position in ``data`` when it is forward and inside, else -1."""
        sib = attrs.get(F.AT_SIBLING)
        if sib is None:
            return -1
        target = _ref(self.unit, sib) - self.base
        return target if pos <= target <= end else -1


@_guarded
def skeleton(
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
    """The unit's root attributes and its functions with code (``data[0]`` is .debug_info
    offset ``base``); ``root_only`` stops after the root DIE (for the address index)."""
    unit = Unit(header, abbrevs)
    w = _Walk(data, base, unit, endian, ranges, addrx, max_dies, deadline)
    sizes, table = header.sizes, unit.table
    pos, end = header.first_die - base, header.end - base
    if end > len(data):
        raise DwarfError(f"unit at {header.offset:#x} runs past .debug_info")
    depth = 0
    stepping = -1  # while >= 0, DIEs deeper than this are inside a subtree being stepped over
    open_fns: list[tuple[int, Function]] = []  # functions whose subtree's end is not known yet
    while pos < end:
        die_off = base + pos
        code, pos = w.code(pos, end)
        if code == 0:
            depth -= 1
            if open_fns and open_fns[-1][0] == depth:
                open_fns.pop()[1].end = base + pos
            if stepping >= 0 and depth <= stepping:
                stepping = -1
            if depth <= 0:
                break  # the root's children ended (what follows is padding)
            continue
        tag, children, step_plan, own_plan = table.get(code) or entry(unit, code)
        if stepping >= 0:
            if type(step_plan) is int:
                pos += step_plan
                if children:
                    depth += 1
                continue
            attrs, pos = _run(step_plan, data, pos, end, sizes, endian)
            sib = w.sibling(attrs, pos, end) if children else -1
            if sib >= 0:
                pos = sib
            elif children:
                depth += 1
            continue
        if type(own_plan) is int:
            attrs, pos = {}, pos + own_plan
        else:
            attrs, pos = _run(own_plan, data, pos, end, sizes, endian)
        if depth == 0:
            if tag not in _ROOTS:
                raise DwarfError(f"unit at {header.offset:#x} starts with tag {tag:#x}")
            _root(unit, attrs, ranges, addrx)
            if root_only or not children:
                return unit
            depth = 1
            continue
        fn = None
        if tag == F.TAG_SUBPROGRAM:
            unit.decls[die_off] = _decl_record(unit, attrs)
            spans = _pc_ranges(unit, attrs, ranges, addrx)
            if spans:
                fn = Function(die_off, base + pos if children else -1, base + pos)
                unit.spans.extend((lo, hi, len(unit.functions)) for lo, hi in spans)
                unit.functions.append(fn)
        elif tag == F.TAG_NAMESPACE and children:
            depth += 1  # namespaces hold functions (C++, and every Rust module)
            continue
        if children:  # a subtree not needed now: jump over it, or step through it
            sib = w.sibling(attrs, pos, end)
            if sib >= 0:
                pos = sib
                if fn is not None:
                    fn.end = base + sib
            else:
                if fn is not None:
                    open_fns.append((depth, fn))
                depth += 1
                stepping = depth - 1
    unit.spans.sort()
    return unit


@_guarded
def body(
    data: bytes,
    base: int,
    unit: Unit,
    fn: Function,
    endian: str,
    ranges: RangeReader,
    addrx: AddrReader,
    *,
    max_dies: int = 2_000_000,
    deadline: float = float("inf"),
) -> list[tuple[int, int, int, int]]:
    """The inlined calls in ``fn``'s subtree (``data[0]`` is offset ``base``, the subtree's
    first child): (start, end, depth, origin) per range. Lexical blocks and inlined calls are
    entered; everything else (a nested function included) is jumped or stepped over."""
    w = _Walk(data, base, unit, endian, ranges, addrx, max_dies, deadline)
    sizes, table = unit.header.sizes, unit.table
    pos, end = fn.body - base, fn.end - base
    out: list[tuple[int, int, int, int]] = []
    depth = 0  # of the function's children
    stepping = -1
    inlined_depths: list[int] = []
    while pos < end:
        code, pos = w.code(pos, end)
        if code == 0:
            depth -= 1
            if stepping >= 0 and depth <= stepping:
                stepping = -1
            if depth < 0:
                break
            continue
        tag, children, step_plan, own_plan = table.get(code) or entry(unit, code)
        if stepping >= 0:
            if type(step_plan) is int:
                pos += step_plan
                if children:
                    depth += 1
                continue
            attrs, pos = _run(step_plan, data, pos, end, sizes, endian)
            sib = w.sibling(attrs, pos, end) if children else -1
            if sib >= 0:
                pos = sib
            elif children:
                depth += 1
            continue
        while inlined_depths and inlined_depths[-1] >= depth:
            inlined_depths.pop()
        if type(own_plan) is int:
            attrs, pos = {}, pos + own_plan
        else:
            attrs, pos = _run(own_plan, data, pos, end, sizes, endian)
        if tag == F.TAG_INLINED_SUBROUTINE:
            origin = _ref(unit, attrs.get(F.AT_ABSTRACT_ORIGIN))
            level = len(inlined_depths) + 1
            for lo, hi in _pc_ranges(unit, attrs, ranges, addrx):
                out.append((lo, hi, level, origin))
            inlined_depths.append(depth)
        if not children:
            continue
        if tag in (F.TAG_INLINED_SUBROUTINE, F.TAG_LEXICAL_BLOCK):
            depth += 1
            continue
        sib = w.sibling(attrs, pos, end)
        if sib >= 0:
            pos = sib
        else:
            depth += 1
            stepping = depth - 1
    return out


@_guarded
def decode_decl(data: bytes, base: int, unit: Unit, endian: str) -> tuple[int, int, int]:
    """(decl line, decl file, referenced DIE) of the DIE at offset ``base`` (``data`` starts
    there and holds the whole DIE or the rest of its unit)."""
    code, pos = uleb(data, 0, len(data))
    plan = (unit.table.get(code) or entry(unit, code))[3]
    if type(plan) is int:
        return 0, -1, -1  # nothing it holds is kept: not a function
    attrs, _pos = _run(plan, data, pos, len(data), unit.header.sizes, endian)
    return _decl_record(unit, attrs)


def _decl_record(unit: Unit, attrs: dict) -> tuple[int, int, int]:
    line = attrs.get(F.AT_DECL_LINE, (0, 0))[1]
    file = attrs.get(F.AT_DECL_FILE, (0, -1))[1]
    origin = _ref(unit, attrs.get(F.AT_ABSTRACT_ORIGIN) or attrs.get(F.AT_SPECIFICATION))
    return line, file, origin


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
