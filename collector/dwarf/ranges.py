"""Address ranges of DIEs (DW_AT_ranges through .debug_ranges or .debug_rnglists) and
DW_FORM_addrx addresses (.debug_addr), bounded: at most 4096 entries per list, every offset
checked against its section."""

from __future__ import annotations

import struct

from collector.dwarf import forms as F
from collector.dwarf.forms import DwarfError, uleb
from collector.dwarf.sections import Sections
from collector.dwarf.unit import Ranges, Unit

_MAX_RANGE_ENTRIES = 4096


def addrx(sections: Sections, unit: Unit, index: int) -> int:
    """DW_FORM_addrx: entry ``index`` of the unit's .debug_addr table."""
    asz = unit.header.address_size
    raw = sections.read(".debug_addr", unit.addr_base + index * asz, asz)
    return F.fixed(raw, 0, asz, len(raw), sections.elf.endian)


def range_list(sections: Sections, unit: Unit, form: int, value: int) -> Ranges:
    """The ranges of DW_AT_ranges: .debug_ranges (DWARF 2-4) or .debug_rnglists (5)."""
    if unit.header.version >= 5:
        return _rnglist(sections, unit, form, value)
    data = sections.whole(".debug_ranges")
    asz = unit.header.address_size
    fmt = sections.elf.endian + ("II" if asz == 4 else "QQ")
    top = (1 << (8 * asz)) - 1
    base, out, pos = unit.low_pc, [], value
    for _ in range(_MAX_RANGE_ENTRIES):
        if pos < 0 or pos + 2 * asz > len(data):
            raise DwarfError(f"range list at {value:#x} runs past .debug_ranges")
        lo, hi = struct.unpack_from(fmt, data, pos)
        pos += 2 * asz
        if lo == 0 and hi == 0:
            return out
        if lo == top:
            base = hi
        elif hi > lo:
            out.append((base + lo, base + hi))
    raise DwarfError(f"range list at {value:#x} has over {_MAX_RANGE_ENTRIES} entries")


def _rnglist(sections: Sections, unit: Unit, form: int, value: int) -> Ranges:
    data = sections.whole(".debug_rnglists")
    end, asz, e = len(data), unit.header.address_size, sections.elf.endian
    if form == F.F_RNGLISTX:
        osz, base_off = unit.header.offset_size, unit.rnglists_base
        if base_off < 0:
            raise DwarfError("DW_FORM_rnglistx without DW_AT_rnglists_base")
        pos = base_off + value * osz
        pos = base_off + F.fixed(data, pos, osz, end, e)
    else:
        pos = value
    base, out = unit.low_pc, []
    for _ in range(_MAX_RANGE_ENTRIES):
        if not 0 <= pos < end:
            raise DwarfError(f"range list at {value:#x} runs past .debug_rnglists")
        kind = data[pos]
        pos += 1
        if kind == 0:  # DW_RLE_end_of_list
            return out
        if kind == 1:  # base_addressx
            i, pos = uleb(data, pos, end)
            base = addrx(sections, unit, i)
        elif kind in (2, 3):  # startx_endx, startx_length
            a, pos = uleb(data, pos, end)
            b, pos = uleb(data, pos, end)
            lo = addrx(sections, unit, a)
            hi = addrx(sections, unit, b) if kind == 2 else lo + b
            out.append((lo, hi))
        elif kind == 4:  # offset_pair
            a, pos = uleb(data, pos, end)
            b, pos = uleb(data, pos, end)
            out.append((base + a, base + b))
        elif kind == 5:  # base_address
            base, pos = F.fixed(data, pos, asz, end, e), pos + asz
        elif kind in (6, 7):  # start_end, start_length
            lo, pos = F.fixed(data, pos, asz, end, e), pos + asz
            if kind == 6:
                hi, pos = F.fixed(data, pos, asz, end, e), pos + asz
            else:
                n, pos = uleb(data, pos, end)
                hi = lo + n
            out.append((lo, hi))
        else:
            raise DwarfError(f"range list entry kind {kind}")
    raise DwarfError(f"range list at {value:#x} has over {_MAX_RANGE_ENTRIES} entries")
