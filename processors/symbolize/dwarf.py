"""file:line (and inlined calls) from DWARF, loaded per compile unit on first use.

pyelftools reads the debug sections of a binary into memory when first asked; after that a
compile unit's line program and DIEs are decoded only when an address inside it is looked up.

The bytes are the binary author's, and pyelftools trusts them: it allocates what a section
header claims, follows sibling pointers wherever they point, and raises whatever a malformed
structure trips. So it is handed a stream that never reads past the file or past a byte
budget, only binaries whose section headers passed the ELF reader's checks, no compressed
section that would decompress past the budget, and never a link to another file. Any
exception of a lookup is counted by its type (``dwarf_<type>``) and ends DWARF for that
compile unit; a DIE walk is bounded by the unit's size, which also stops sibling loops.
"""

from __future__ import annotations

import os
import struct
from array import array
from bisect import bisect_right
from collections.abc import Callable
from typing import Any

from elftools.common.exceptions import DWARFError, ELFError
from elftools.elf.elffile import ELFFile

from collector.elf import ElfError, ElfReader
from collector.elf.reader import SHF_COMPRESSED, SHT_NOBITS

# (file, line, call_chain) where call_chain lists inlined calls innermost first:
# ((inlined function name, its linkage name), ...) with the file/line of each call site.
LineInfo = tuple[str, int, tuple[tuple[str, str, str, int], ...]]
ErrorHook = Callable[[str, BaseException], None]

_ERROR_NAMES: tuple[tuple[type[BaseException], str], ...] = (
    (ELFError, "dwarf_elf_error"),
    (DWARFError, "dwarf_dwarf_error"),
    (KeyError, "dwarf_key_error"),
    (IndexError, "dwarf_index_error"),
    (ValueError, "dwarf_value_error"),
    (AttributeError, "dwarf_attribute_error"),
    (TypeError, "dwarf_type_error"),
    (struct.error, "dwarf_struct_error"),
    (AssertionError, "dwarf_assertion_error"),
    (RecursionError, "dwarf_recursion_error"),
    (NotImplementedError, "dwarf_unsupported_error"),
    (ArithmeticError, "dwarf_arithmetic_error"),
    (OSError, "dwarf_read_error"),
)
_MAX_ERRORS = 16  # per binary; past it DWARF is off for that binary
_MAX_INLINE_DEPTH = 128
# Sections ELFFile.get_dwarf_info reads into memory whole.
_READ_PREFIXES = (".debug_", ".zdebug_", ".eh_frame", ".gnu_debugaltlink")


def error_name(exc: BaseException) -> str:
    """The counter an exception of a DWARF lookup is counted under."""
    for typ, name in _ERROR_NAMES:
        if isinstance(exc, typ):
            return name
    return "dwarf_other_error"


def dwarf_refusal(elf: ElfReader, max_bytes: int) -> str:
    """Why this binary's DWARF must not be handed to pyelftools ("" when it may be)."""
    if elf.problems:
        return "the ELF headers are malformed"
    size = 0
    for sec in elf.section_list:
        if not sec.name.startswith(_READ_PREFIXES) or sec.type == SHT_NOBITS:
            continue
        if sec.name.startswith(".zdebug_"):
            return "old-style .zdebug compression (decompressed without a bound)"
        if sec.offset > elf.size or sec.size > elf.size - sec.offset:
            return f"{sec.name} lies outside the file"
        claimed = sec.size
        if sec.flags & SHF_COMPRESSED:
            try:  # Elf64_Chdr: type, reserved, size; Elf32_Chdr: type, size
                hdr = elf.read(sec.offset, 16 if elf.is64 else 8, f"{sec.name} header")
            except ElfError as e:
                return str(e)
            claimed = struct.unpack_from(
                elf.endian + ("Q" if elf.is64 else "I"), hdr, 8 if elf.is64 else 4
            )[0]
        if sec.name in (".debug_info", ".debug_line"):
            size += claimed
        if claimed > 4 * max_bytes:
            return f"{sec.name} is {claimed} bytes"
    if size > max_bytes:
        return f".debug_info + .debug_line are {size} bytes (dwarf_max_bytes {max_bytes})"
    return ""


class BoundedFile:
    """The stream pyelftools reads: never past ``size`` (the file's size when it was checked)
    and never more than ``budget`` bytes in all, so no claimed size becomes an allocation."""

    def __init__(self, fd: int, size: int, budget: int) -> None:
        self.fd, self.size, self.budget = fd, size, budget
        self.pos = 0
        self.used = 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int | None = -1) -> bytes:
        left = max(0, self.size - self.pos)
        n = left if n is None or n < 0 else min(n, left)
        if n > self.budget - self.used:
            raise OSError(f"DWARF read budget of {self.budget} bytes exhausted")
        data = os.pread(self.fd, n, self.pos)
        self.pos += len(data)
        self.used += len(data)
        return data

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class DwarfLines:
    """Address -> (file, line, inline chain) for one binary. Owns ``fd``."""

    def __init__(
        self,
        fd: int,
        inline: bool = True,
        max_bytes: int = 8 << 20,
        on_error: ErrorHook | None = None,
    ) -> None:
        self._file = BoundedFile(fd, os.fstat(fd).st_size, 4 * max_bytes + (1 << 20))
        self.inline = inline
        self._on_error = on_error
        self.errors = 0
        self._dwarf: Any = None
        self._cu_ranges: list[tuple[int, int, int]] | None = None  # (lo, hi, cu_offset)
        self._cus: dict[int, _CuTable | None] = {}  # None: the unit failed to decode
        try:
            elf = ELFFile(self._file)  # no stream_loader: never opens another file
            if elf.has_dwarf_info() and elf.get_section_by_name(".debug_line") is not None:
                self._dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False, follow_links=False)
        except Exception as e:  # pyelftools on hostile bytes: anything; counted by type
            self._error(e)
            self._dwarf = None
        if self._dwarf is None:
            self.close()

    @property
    def available(self) -> bool:
        return self._dwarf is not None

    def close(self) -> None:
        self._file.close()

    def _error(self, exc: BaseException) -> None:
        self.errors += 1
        if self._on_error is not None:
            self._on_error(error_name(exc), exc)

    def lookup(self, vaddr: int) -> LineInfo | None:
        if self._dwarf is None:
            return None
        cu_off = None
        try:
            cu_off = self._cu_for(vaddr)
            if cu_off is None:
                return None
            if cu_off in self._cus:
                table = self._cus[cu_off]
            else:
                self._cus[cu_off] = None  # stays None if decoding raises
                table = self._cus[cu_off] = _CuTable(self._dwarf, cu_off, self.inline)
            return table.lookup(vaddr) if table is not None else None
        except Exception as e:  # bad bytes in this unit: counted, and the unit is skipped
            self._error(e)
            if self.errors >= _MAX_ERRORS:
                self._dwarf = None
                self._cus.clear()
            return None

    def _cu_for(self, vaddr: int) -> int | None:
        if self._cu_ranges is None:
            self._cu_ranges = []  # a failure below is not retried on every lookup
            self._cu_ranges = self._build_ranges()
        i = bisect_right(self._cu_ranges, (vaddr, float("inf"))) - 1
        while i >= 0:
            lo, hi, off = self._cu_ranges[i]
            if lo <= vaddr < hi:
                return off
            if vaddr - lo > 1 << 28:
                break
            i -= 1
        return None

    def _build_ranges(self) -> list[tuple[int, int, int]]:
        out = []
        aranges = self._dwarf.get_aranges()
        if aranges is not None:
            for e in aranges.entries:
                if e.length:
                    out.append((e.begin_addr, e.begin_addr + e.length, e.info_offset))
        if not out:
            for cu in self._dwarf.iter_CUs():
                top = cu.get_top_DIE()
                for lo, hi in _die_ranges(self._dwarf, top):
                    out.append((lo, hi, cu.cu_offset))
        out.sort()
        return out


class _CuTable:
    def __init__(self, dwarf: Any, cu_offset: int, inline: bool) -> None:
        cu = dwarf.get_CU_at(cu_offset)
        lp = dwarf.line_program_for_CU(cu)
        top = cu.get_top_DIE()
        comp_dir = _attr_str(top, "DW_AT_comp_dir")
        self._files = _file_names(lp, comp_dir)
        rows: list[tuple[int, int, int, bool]] = []
        for entry in lp.get_entries() if lp else ():
            st = entry.state
            if st is not None:
                rows.append((st.address, st.file, st.line, st.end_sequence))
        rows.sort(key=lambda r: (r[0], not r[3]))
        # Compact rows: the decoded program is dropped; a file index of 0 marks a sequence end.
        self._addrs = array("Q", (r[0] for r in rows))
        self._file_idx = array("I", (0 if r[3] else r[1] + 1 for r in rows))
        self._line_no = array("I", (r[2] for r in rows))
        del rows
        self._inlines: list[tuple[int, int, int, str, str, int, int]] = []
        if inline:
            self._collect_inlines(dwarf, top, cu.size)
            self._inlines.sort()

    def _collect_inlines(self, dwarf: Any, top: Any, unit_size: int) -> None:
        # Every DIE takes at least one byte, so a walk that visits more DIEs than the unit has
        # bytes is going round in circles (a DW_AT_sibling pointing backwards).
        budget = unit_size + 1
        stack = [(top, 0)]
        while stack:
            die, depth = stack.pop()
            for child in die.iter_children():
                budget -= 1
                if budget < 0:
                    raise DWARFError("DIE walk visits more DIEs than the unit has bytes")
                if child.tag == "DW_TAG_inlined_subroutine":
                    name, linkage = _die_name(child)
                    call_file = child.attributes.get("DW_AT_call_file")
                    call_line = child.attributes.get("DW_AT_call_line")
                    for lo, hi in _die_ranges(dwarf, child):
                        self._inlines.append(
                            (
                                lo,
                                hi,
                                depth,
                                name,
                                linkage,
                                call_file.value if call_file else 0,
                                call_line.value if call_line else 0,
                            )
                        )
                if child.has_children and depth < _MAX_INLINE_DEPTH:
                    stack.append((child, depth + 1))

    def _file(self, idx: int) -> str:
        return self._files.get(idx, "")

    def lookup(self, vaddr: int) -> LineInfo | None:
        i = bisect_right(self._addrs, vaddr) - 1
        if i < 0:
            return None
        file_idx = self._file_idx[i] - 1
        line = self._line_no[i]
        if file_idx < 0:
            return None
        chain = ()
        if self._inlines:
            hits = sorted((e for e in self._inlines if e[0] <= vaddr < e[1]), key=lambda e: -e[2])
            chain = tuple((e[3], e[4], self._file(e[5]), e[6]) for e in hits)
        return self._file(file_idx), line, chain


def _attr_str(die: Any, name: str) -> str:
    a = die.attributes.get(name)
    if a is None:
        return ""
    v = a.value
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _die_name(die: Any) -> tuple[str, str]:
    for _ in range(4):  # follow DW_AT_abstract_origin / DW_AT_specification
        name = _attr_str(die, "DW_AT_name")
        linkage = _attr_str(die, "DW_AT_linkage_name") or _attr_str(die, "DW_AT_MIPS_linkage_name")
        if name or linkage:
            return name, linkage
        for ref in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if ref in die.attributes:
                die = die.get_DIE_from_attribute(ref)
                break
        else:
            break
    return "", ""


def _die_ranges(dwarf: Any, die: Any) -> list[tuple[int, int]]:
    attrs = die.attributes
    if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
        lo = attrs["DW_AT_low_pc"].value
        hi_attr = attrs["DW_AT_high_pc"]
        hi = hi_attr.value if hi_attr.form == "DW_FORM_addr" else lo + hi_attr.value
        return [(lo, hi)]
    if "DW_AT_ranges" in attrs:
        rl = dwarf.range_lists()
        if rl is None:
            return []
        base = 0
        cu_top = die.cu.get_top_DIE()
        if "DW_AT_low_pc" in cu_top.attributes:
            base = cu_top.attributes["DW_AT_low_pc"].value
        out = []
        for r in rl.get_range_list_at_offset(attrs["DW_AT_ranges"].value, cu=die.cu):
            if hasattr(r, "begin_offset"):
                if getattr(r, "is_absolute", False):
                    out.append((r.begin_offset, r.end_offset))
                else:
                    out.append((base + r.begin_offset, base + r.end_offset))
            elif hasattr(r, "base_address"):
                base = r.base_address
        return out
    return []


def _file_names(lp: Any, comp_dir: str) -> dict[int, str]:
    if lp is None:
        return {}
    hdr = lp.header
    v5 = hdr.version >= 5
    dirs = [
        d.decode("utf-8", "replace") if isinstance(d, bytes) else d for d in hdr.include_directory
    ]
    out = {}
    for i, fe in enumerate(hdr.file_entry):
        name = fe.name.decode("utf-8", "replace") if isinstance(fe.name, bytes) else fe.name
        di = fe.dir_index
        if v5:
            d = dirs[di] if di < len(dirs) else ""
        else:
            d = comp_dir if di == 0 else (dirs[di - 1] if di - 1 < len(dirs) else "")
        if d and not name.startswith("/"):
            if not d.startswith("/") and comp_dir:
                d = os.path.join(comp_dir, d)
            name = os.path.join(d, name)
        out[i if v5 else i + 1] = name
    return out
