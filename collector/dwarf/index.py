"""Function declaration lines (``DW_AT_decl_line``, ``DW_AT_decl_file``) for addresses, read
lazily: only the compile units that hold addresses asked about are walked.

address -> unit (.debug_aranges, else the units' root DIEs, indexed once) -> the function
whose ranges hold it and the inlined calls inside it that do -> each one's decl line and file,
following ``DW_AT_abstract_origin`` / ``DW_AT_specification`` (C++ methods declared in their
class, concrete copies of inline functions), across units too (``DW_FORM_ref_addr``).

Bounded: bytes by the ELF reader's budget (every read and every inflated byte), time by
``max_seconds`` for the whole object (checked every 4096 DIEs), walked units by
``max_units`` (the cache is cleared when full). A unit that fails its checks is remembered and
not walked again; any ``DwarfError`` costs only the lookup that met it. Counters (through
``count``): ``decl_units`` walked, ``decl_malformed`` refusals, ``decl_budget_exceeded``,
``decl_units_skipped`` (units left out of the root-range index: type units, bad units).
"""

from __future__ import annotations

import bisect
import struct
import time
from collections.abc import Callable

from collector.dwarf import forms as F
from collector.dwarf.forms import Abbrev, DwarfBudgetExceeded, DwarfError, parse_abbrevs
from collector.dwarf.linehdr import parse_file_table
from collector.dwarf.ranges import addrx, range_list
from collector.dwarf.sections import Sections
from collector.dwarf.unit import (
    Function,
    Header,
    Ranges,
    Unit,
    body,
    decode_decl,
    parse_header,
    skeleton,
)
from collector.elf import BudgetExceeded, ElfError, ElfReader

Decl = tuple[int, str]  # (decl line, decl file path); 0 / "" when the DWARF has none
_MAX_REF_HOPS = 8  # origin -> specification -> ... chains are 2-3 long in real code
_MAX_ARANGES = 1 << 20
_MAX_UNITS_SCANNED = 1 << 18
_MAX_HEADER = 4 << 20  # bytes of one line program header
_MAX_REFUSALS = 64  # malformed units or tables met before the object is given up
_MAX_DIE = 4096  # bytes read for one DIE decoded by offset (a subprogram's are ~50)
_MAX_DECLS = 1 << 16  # decoded DIEs kept per unit
# Approximate bytes of what walked units keep, per item, fitted to tracemalloc on libc's debug
# file and libpython (within -1 %/+7 % of the traced figure): so that the symbolizer's memory
# budget sees them without a deep walk. Abbreviations (parsed tables) and compiled plans lead.
_UNIT_BYTES, _DECL_BYTES, _FUNCTION_BYTES, _SPAN_BYTES = 1000, 150, 200, 100
_ABBREV_BYTES, _PLAN_BYTES, _FILE_BYTES = 700, 300, 120


class DeclIndex:
    """Decl lines of one ELF object with DWARF. Not thread-safe (the symbolizer's lock)."""

    def __init__(
        self,
        elf: ElfReader,
        max_seconds: float = 2.0,
        max_units: int = 256,
        count: Callable[[str], None] | None = None,
    ) -> None:
        self.sections = Sections(elf)
        self.endian = elf.endian
        self.max_seconds, self.max_units = max_seconds, max_units
        self.spent = 0.0
        self.disabled = ""  # why this object gives no more decl lines
        self._refusals = 0
        self._count = count or (lambda _n: None)
        self._units: dict[int, Unit] = {}
        self._bad: set[int] = set()
        self._abbrevs: dict[int, dict[int, Abbrev]] = {}
        self._files: dict[int, list[str]] = {}
        self._aranges: tuple[list[int], list[tuple[int, int, int]]] | None = None
        self._roots: tuple[list[int], list[tuple[int, int, int]]] | None = None
        self._offsets: list[int] | None = None

    def nbytes(self) -> int:
        """Bytes held: whole sections exactly, walked units, abbreviations and file tables
        estimated per item (constants above). Walks only the caches (at most 256 units)."""
        n = self.sections.nbytes()
        for u in self._units.values():
            n += _UNIT_BYTES + _DECL_BYTES * len(u.decls) + _FUNCTION_BYTES * len(u.functions)
            n += _SPAN_BYTES * len(u.spans) + _PLAN_BYTES * len(u.table)
        n += sum(_ABBREV_BYTES * len(a) for a in self._abbrevs.values())
        return n + sum(_FILE_BYTES * len(f) for f in self._files.values())

    # ---- the one entry point -------------------------------------------------------------
    def chain(self, vaddr: int) -> tuple[Decl, ...]:
        """The function holding ``vaddr`` first, then each inlined call holding it, outermost
        first; () when the DWARF does not say (or cannot be read)."""
        if self.disabled:
            return ()
        try:
            return self._chain(vaddr)
        except (DwarfBudgetExceeded, BudgetExceeded) as e:
            self.disabled = str(e)
            self._count("decl_budget_exceeded")
        except ElfError as e:  # DwarfError, or bytes outside the file
            self._count("decl_malformed")
            self._refusals += 1
            if self._refusals >= _MAX_REFUSALS:  # this object's DWARF is not worth more time
                self.disabled = f"{self._refusals} refusals, the last: {e}"
        return ()

    def _chain(self, vaddr: int) -> tuple[Decl, ...]:
        unit = self._unit_at(vaddr)
        if unit is None:
            return ()
        i = bisect.bisect_right(unit.spans, (vaddr, 1 << 64, 1 << 64))
        fn = None
        for lo, hi, index in reversed(unit.spans[max(0, i - 16) : i]):
            if lo <= vaddr < hi:
                fn = unit.functions[index]
                break
        if fn is None:
            return ()
        if fn.inlined is None:
            fn.inlined = self._body(unit, fn)
        calls: dict[int, int] = {}
        for lo, hi, depth, origin in fn.inlined:
            if lo <= vaddr < hi:
                calls.setdefault(depth, origin)
        out = [self._decl(fn.die, unit)]
        out += [self._decl(calls[d], unit) for d in sorted(calls)]
        return tuple(out)

    def _body(self, unit: Unit, fn: Function) -> list[tuple[int, int, int, int]]:
        if fn.body < 0 or fn.end <= fn.body:
            return []
        t0 = time.monotonic()
        try:
            data = self.sections.read(".debug_info", fn.body, fn.end - fn.body)
            return body(
                data,
                fn.body,
                unit,
                fn,
                self.endian,
                self._ranges,
                self._addrx,
                deadline=t0 + self.max_seconds - self.spent,
            )
        except DwarfBudgetExceeded:
            raise
        except ElfError:
            fn.inlined = []  # the function's own decl line still counts; not walked again
            raise
        finally:
            self.spent += time.monotonic() - t0

    # ---- decl attributes -----------------------------------------------------------------
    def _decl(self, offset: int, unit: Unit) -> Decl:
        line, path = 0, ""
        for _ in range(_MAX_REF_HOPS):
            if offset < 0:
                break
            if not unit.header.offset <= offset < unit.header.end:
                found = self._unit_holding(offset)
                if found is None:
                    break
                unit = found
            rec = unit.decls.get(offset)
            if rec is None:
                window = min(_MAX_DIE, unit.header.end - offset)
                rec = decode_decl(
                    self.sections.read(".debug_info", offset, window), offset, unit, self.endian
                )
                if len(unit.decls) >= _MAX_DECLS:
                    unit.decls.clear()
                unit.decls[offset] = rec
            decl_line, decl_file, offset = rec
            if not line and decl_line > 0:
                line = decl_line
            if not path and decl_file >= 0:
                files = self._file_table(unit)
                if 0 <= decl_file < len(files):
                    path = files[decl_file]
            if line and path:
                break
        return line, path

    def _file_table(self, unit: Unit) -> list[str]:
        key = unit.header.offset
        files = self._files.get(key)
        if files is None:
            files = []
            if unit.stmt_list >= 0 and self.sections.get(".debug_line") is not None:
                head = self.sections.read(".debug_line", unit.stmt_list, 16)
                length = struct.unpack_from(self.endian + "I", head, 0)[0] if len(head) >= 4 else 0
                size = min(length + (12 if length == 0xFFFFFFFF else 4), _MAX_HEADER)
                data = self.sections.read(".debug_line", unit.stmt_list, size)
                files = parse_file_table(data, self.endian, unit.comp_path, self._line_string)
            self._files[key] = files
        return files

    def _line_string(self, form: int, offset: int) -> str:
        name = ".debug_line_str" if form == F.F_LINE_STRP else ".debug_str"
        return self.sections.string(name, offset)

    def _addrx(self, unit: Unit, index: int) -> int:
        return addrx(self.sections, unit, index)

    def _ranges(self, unit: Unit, form: int, value: int) -> Ranges:
        return range_list(self.sections, unit, form, value)

    # ---- units ---------------------------------------------------------------------------
    def _unit_at(self, vaddr: int) -> Unit | None:
        for index in (self._aranges_index, self._roots_index):
            starts, spans = index()
            i = bisect.bisect_right(starts, vaddr) - 1
            for lo, hi, off in reversed(spans[max(0, i - 3) : i + 1]):
                if lo <= vaddr < hi:
                    return self._unit(off)
        return None

    def _unit_holding(self, offset: int) -> Unit | None:
        offsets = self._unit_offsets()
        i = bisect.bisect_right(offsets, offset) - 1
        return self._unit(offsets[i]) if i >= 0 else None

    def _unit(self, offset: int) -> Unit | None:
        unit = self._units.get(offset)
        if unit is not None or offset in self._bad:
            return unit
        if self.spent >= self.max_seconds:
            raise DwarfBudgetExceeded(f"{self.spent:.2f} s spent (budget {self.max_seconds} s)")
        if len(self._units) >= self.max_units:  # the oldest half goes (dicts keep order)
            for key in list(self._units)[: self.max_units // 2 + 1]:
                del self._units[key]
                self._files.pop(key, None)
            self._prune_abbrevs()
        t0 = time.monotonic()
        try:
            unit = self._walk(offset, root_only=False, deadline=t0 + self.max_seconds - self.spent)
        except DwarfBudgetExceeded:
            raise
        except ElfError:
            self._bad.add(offset)
            raise
        finally:
            self.spent += time.monotonic() - t0
        self._count("decl_units")
        self._units[offset] = unit
        return unit

    def _prune_abbrevs(self) -> None:
        """Parsed abbreviation tables go with the units that used them: most objects have one
        table per unit, and the root index (no .debug_aranges) parses every unit's, so kept
        they grew with every unit ever seen (the largest part of libc's decl caches)."""
        live = {u.header.abbrev_offset for u in self._units.values()}
        for key in [k for k in self._abbrevs if k not in live]:
            del self._abbrevs[key]

    def _walk(self, offset: int, root_only: bool, deadline: float = float("inf")) -> Unit:
        s = self.sections
        head = s.read(".debug_info", offset, 24)
        header = parse_header(head, offset, self.endian)
        if header.unit_type not in (1, 3):
            raise DwarfError(f"unit at {offset:#x}: type {header.unit_type} is not read")
        size = (header.first_die - offset + 4096) if root_only else header.end - offset
        data = s.read(".debug_info", offset, min(size, header.end - offset))
        if root_only and len(data) < header.end - offset:
            header.end = offset + len(data)  # the root DIE fits in 4 KiB in real units
        abbrevs = self._abbrevs.get(header.abbrev_offset)
        if abbrevs is None:
            table = s.whole(".debug_abbrev")
            if not 0 <= header.abbrev_offset < len(table):
                raise DwarfError(f"abbreviation offset {header.abbrev_offset:#x} is outside")
            abbrevs = parse_abbrevs(table, header.abbrev_offset, len(table))
            if len(self._abbrevs) >= self.max_units:
                self._prune_abbrevs()
            self._abbrevs[header.abbrev_offset] = abbrevs
        unit = skeleton(
            data,
            offset,
            header,
            abbrevs,
            self.endian,
            self._ranges,
            self._addrx,
            root_only=root_only,
            deadline=deadline,
        )
        form, value = unit.comp_dir
        if value >= 0:
            unit.comp_path = self._string(unit, data, offset, form, value)
        return unit

    def _string(self, unit: Unit, data: bytes, base: int, form: int, value: int) -> str:
        if form == F.F_STRING:
            end = F.cstring_end(data, value, len(data))
            return data[value:end].decode("utf-8", "replace")
        if form in (F.F_STRP, F.F_LINE_STRP):
            return self._line_string(form, value)
        if form in (F.F_STRX, F.F_STRX1, F.F_STRX2, F.F_STRX3, F.F_STRX4, F.F_GNU_STR_INDEX):
            osz = unit.header.offset_size
            table = self.sections.read(
                ".debug_str_offsets", unit.str_offsets_base + value * osz, osz
            )
            return self.sections.string(
                ".debug_str", F.fixed(table, 0, osz, len(table), self.endian)
            )
        return ""

    def _scan_offsets(self) -> list[int]:
        """Every unit's offset in .debug_info, from the unit headers alone."""
        out, off, total = [], 0, self.sections.size(".debug_info")
        while off < total:
            if len(out) >= _MAX_UNITS_SCANNED:
                raise DwarfError(f"more than {_MAX_UNITS_SCANNED} units")
            header = parse_header(self.sections.read(".debug_info", off, 24), off, self.endian)
            out.append(off)
            off = header.end
        return out

    def _aranges_index(self) -> tuple[list[int], list[tuple[int, int, int]]]:
        if self._aranges is None:
            self._aranges = ([], [])  # broken: counted once, the units' own ranges serve
            try:
                self._aranges = _sorted(self._read_aranges())
            except BudgetExceeded:
                raise
            except ElfError:
                self._count("decl_malformed")
        return self._aranges

    def _roots_index(self) -> tuple[list[int], list[tuple[int, int, int]]]:
        """The units' own ranges from their root DIEs: for objects without .debug_aranges
        (clang and rustc do not write it by default)."""
        if self._roots is None:
            self._roots = ([], [])  # a failure below leaves it empty, not retried
            spans = []
            listed = {cu for _lo, _hi, cu in self._aranges_index()[1]}
            for off in self._unit_offsets():
                if off in listed:
                    continue  # .debug_aranges already has its ranges
                try:
                    root = self._walk(off, root_only=True)
                except (DwarfBudgetExceeded, BudgetExceeded):
                    raise
                except ElfError:
                    self._count("decl_units_skipped")  # type unit or bad unit: others index
                    continue
                spans += [(lo, hi, off) for lo, hi in root.ranges]
            self._roots = _sorted(spans)
        return self._roots

    def _unit_offsets(self) -> list[int]:
        if self._offsets is None:
            self._offsets = self._scan_offsets()
        return self._offsets

    def _read_aranges(self) -> list[tuple[int, int, int]]:
        data = self.sections.whole(".debug_aranges")
        out: list[tuple[int, int, int]] = []
        pos, end, e = 0, len(data), self.endian
        try:
            while pos + 12 <= end:
                length, ulen, osz = struct.unpack_from(e + "I", data, pos)[0], 4, 4
                if length == 0xFFFFFFFF:
                    length, ulen, osz = struct.unpack_from(e + "Q", data, pos + 4)[0], 12, 8
                set_end = pos + ulen + length
                if set_end > end or length < 4:
                    raise DwarfError("address range set runs past .debug_aranges")
                p = pos + ulen + 2  # version
                cu = struct.unpack_from(e + ("I" if osz == 4 else "Q"), data, p)[0]
                asz, seg = data[p + osz], data[p + osz + 1]
                if asz not in (4, 8) or seg:
                    raise DwarfError(f"address ranges with address size {asz}, segment {seg}")
                p += osz + 2
                p += -(p - pos) % (2 * asz)  # tuples are aligned to twice the address size
                fmt = e + ("II" if asz == 4 else "QQ")
                while p + 2 * asz <= set_end:
                    lo, n = struct.unpack_from(fmt, data, p)
                    p += 2 * asz
                    if lo == 0 and n == 0:
                        break
                    if len(out) >= _MAX_ARANGES:
                        raise DwarfError(f"more than {_MAX_ARANGES} address ranges")
                    if n:
                        out.append((lo, lo + n, cu))
                pos = set_end
        except struct.error as exc:
            raise DwarfError(f".debug_aranges: {exc}") from exc
        return out


def _sorted(spans: list[tuple[int, int, int]]) -> tuple[list[int], list[tuple[int, int, int]]]:
    spans = sorted(s for s in spans if s[1] > s[0])
    return [s[0] for s in spans], spans


__all__ = ["Decl", "DeclIndex", "Header"]
