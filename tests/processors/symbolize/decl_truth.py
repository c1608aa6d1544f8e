"""Ground truth for decl lines from an independent reader (pyelftools), and the fixtures.

``Truth`` walks a whole object with pyelftools once (fine for the small fixtures): every
function with code and every inlined call, with address ranges and the decl line and file that
the DWARF gives it, following DW_AT_abstract_origin / DW_AT_specification the way readelf
shows them. Nothing here shares code with collector/dwarf.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile

TESTDATA = Path(__file__).resolve().parent / "testdata"
SOURCES = {"c": "decl.c", "cc": "decl.cc", "rs": "decl.rs"}


TOOLS = {"c": "gcc", "cc": "g++", "rs": "rustc"}


def _tool(kind: str) -> str | None:
    """The compiler for ``kind``: on PATH, or rustup's ~/.cargo/bin (not on every shell's PATH:
    a CI runner's non-login shell may not have it)."""
    tool = TOOLS[kind]
    found = shutil.which(tool)
    if found is None and kind == "rs":
        found = shutil.which(tool, path=os.path.expanduser("~/.cargo/bin"))
    return found


def have(kind: str) -> str | None:
    """None when the compiler for ``kind`` is here, else why not."""
    return None if _tool(kind) else f"{TOOLS[kind]} is not installed"


def build(kind: str, opt: int, out: Path) -> Path:
    src = TESTDATA / SOURCES[kind]
    exe = out / f"decl_{kind}_O{opt}"
    if kind == "rs":
        cmd = [str(_tool(kind)), "-C", f"opt-level={opt}", "-g", "-C", "force-frame-pointers=yes"]
        cmd += [str(src), "-o", str(exe)]
    else:
        cc = "gcc" if kind == "c" else "g++"
        cmd = [cc, f"-O{opt}", "-g", "-fno-omit-frame-pointer", str(src), "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=out)
    return exe


def marker(kind: str, name: str) -> int:
    """The line of ``DECL:<name>`` in the fixture's source."""
    text = (TESTDATA / SOURCES[kind]).read_text().splitlines()
    return next(i for i, line in enumerate(text, 1) if f"DECL:{name}" in line)


@dataclass(frozen=True)
class Scope:
    ranges: tuple[tuple[int, int], ...]
    depth: int  # 0: a function with code; n: an inlined call n levels inside one
    line: int
    file: str  # basename of the decl file ("" if none)

    def holds(self, addr: int) -> bool:
        return any(lo <= addr < hi for lo, hi in self.ranges)


class Truth:
    """Scopes of the units named ``unit`` (the fixture's own source; a Rust binary also holds
    the standard library's units) or of all units."""

    def __init__(self, path: Path, unit: str = "") -> None:
        self.functions: list[Scope] = []
        self.inlined: list[Scope] = []
        with open(path, "rb") as f:
            elf = ELFFile(f)
            dwarf = elf.get_dwarf_info()
            self._ranges = dwarf.range_lists()
            for cu in dwarf.iter_CUs():
                top = cu.get_top_DIE()
                name = top.attributes.get("DW_AT_name")
                # rustc names its units "<dir>/decl.rs/@/decl.<hash>-cgu.0"
                parts = name.value.decode().split("/") if name is not None else []
                if unit and unit not in parts:
                    continue
                base = (
                    top.attributes["DW_AT_low_pc"].value if "DW_AT_low_pc" in top.attributes else 0
                )
                for die in cu.iter_DIEs():
                    if die.tag not in ("DW_TAG_subprogram", "DW_TAG_inlined_subroutine"):
                        continue
                    ranges = self._die_ranges(die, cu, base)
                    if not ranges:
                        continue
                    line, file = self._decl(die, dwarf)
                    if die.tag == "DW_TAG_subprogram":
                        self.functions.append(Scope(ranges, 0, line, file))
                    else:
                        depth, parent = 0, die
                        while parent is not None and parent.tag != "DW_TAG_subprogram":
                            depth += parent.tag == "DW_TAG_inlined_subroutine"
                            parent = parent.get_parent()
                        self.inlined.append(Scope(ranges, depth, line, file))

    def chain(self, addr: int) -> list[tuple[int, str]]:
        """(decl line, decl file basename) of the function holding ``addr``, then of each
        inlined call holding it, outermost first."""
        fns = [s for s in self.functions if s.holds(addr)]
        if not fns:
            return []
        fn = min(fns, key=lambda s: sum(hi - lo for lo, hi in s.ranges))  # innermost
        calls = sorted((s for s in self.inlined if s.holds(addr)), key=lambda s: s.depth)
        return [(fn.line, fn.file)] + [(s.line, s.file) for s in calls]

    def _die_ranges(self, die, cu, base: int) -> tuple[tuple[int, int], ...]:  # type: ignore[no-untyped-def]
        at = die.attributes
        if "DW_AT_low_pc" in at and "DW_AT_high_pc" in at:
            lo = at["DW_AT_low_pc"].value
            high = at["DW_AT_high_pc"]
            hi = high.value if high.form == "DW_FORM_addr" else lo + high.value
            return ((lo, hi),) if hi > lo else ()
        if "DW_AT_ranges" in at and self._ranges is not None:
            out = []
            rl = self._ranges.get_range_list_at_offset(at["DW_AT_ranges"].value, cu=cu)
            for e in rl:
                if hasattr(e, "base_address"):
                    base = e.base_address
                elif e.is_absolute:
                    out.append((e.begin_offset, e.end_offset))
                else:
                    out.append((base + e.begin_offset, base + e.end_offset))
            return tuple((lo, hi) for lo, hi in out if hi > lo)
        return ()

    @staticmethod
    def _decl(die, dwarf) -> tuple[int, str]:  # type: ignore[no-untyped-def]
        line, file = 0, ""
        for _ in range(8):
            at = die.attributes
            if not line and "DW_AT_decl_line" in at:
                line = at["DW_AT_decl_line"].value
            if not file and "DW_AT_decl_file" in at:
                lp = dwarf.line_program_for_CU(die.cu)
                idx = at["DW_AT_decl_file"].value
                entries = lp["file_entry"]
                i = idx if lp.header.version >= 5 else idx - 1
                if 0 <= i < len(entries):
                    file = os.path.basename(entries[i].name.decode())
            if line and file:
                break
            ref = next(
                (r for r in ("DW_AT_abstract_origin", "DW_AT_specification") if r in at), None
            )
            if ref is None:
                break
            die = die.get_DIE_from_attribute(ref)
        return line, file
