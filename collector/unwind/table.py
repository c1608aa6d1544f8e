"""Build one binary's unwind table: symbolic reads .eh_frame/.debug_frame, breakpad.py makes rows.

symbolic (Sentry's Rust library) does the DWARF CFI interpretation (CIE/FDE parsing, augmentation
strings, remember/restore state, every DW_CFA opcode) and hands back Breakpad text; we only map
that text onto the few rule shapes the BPF walker supports. Why not pyelftools: pure Python,
~100x slower on libc. Why not our own CFI parser: that is the part where bugs hide, and a
well-kept library exists for it.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from dataclasses import dataclass
from typing import BinaryIO

import symbolic

from collector.elf import ElfError, ElfReader
from collector.gosym.cfi import go_cfi_text
from collector.unwind import layout as L
from collector.unwind.breakpad import CfiError, CfiStats, Rows, build_rows

# Lazy-binding PLT stubs: their CFA is a DWARF expression ((rip & 15) >= 11 ? rsp+16 : rsp+8)
# that symbolic drops, so its rows there are wrong; .plt.sec/.plt.got stubs do not touch rsp.
_PLT_SECTIONS = (".plt",)


class TableError(ValueError):
    """No table can be built for this binary (not ELF, no call-frame info, over budget)."""


@dataclass(frozen=True, slots=True)
class UnwindTable:
    key: str  # "build-id:<hex>" or "file:<dev>:<ino>:<size>:<mtime_ns>"
    path: str
    rows: Rows
    build_seconds: float
    from_cache: bool = False  # read back from collector.unwind.cache, not built

    @property
    def base(self) -> int:
        return self.rows.base

    @property
    def stats(self) -> CfiStats:
        return self.rows.stats

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return len(self.rows) * L.ROW.size


def binary_key(fd: int, build_id: str | None = None) -> str:
    """Tables are shared by every process mapping the same binary: build id, else identity.
    ``build_id``: already read by the caller ("" for none)."""
    if build_id is None:
        try:
            build_id = ElfReader(fd).build_id()
        except (ElfError, OSError, ValueError):
            build_id = ""
    if build_id:
        return f"build-id:{build_id}"
    st = os.fstat(fd)
    return f"file:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _elf_stops(fd: int) -> tuple[tuple[tuple[int, int, int], ...], int]:
    """The PLT ranges, and the ELF entry point (0: none, as in most shared objects)."""
    try:
        elf = ElfReader(fd)
    except (ElfError, OSError, ValueError):
        return (), 0
    out = []
    for name in _PLT_SECTIONS:
        sec = elf.section(name)
        if sec is not None and sec.addr and sec.size:
            out.append((sec.addr, sec.addr + sec.size, L.PLT))
    return tuple(out), elf.entry


def cfi_text(path: str, out: BinaryIO | None = None) -> bytes:
    """symbolic's Breakpad STACK CFI text for an x86-64 ELF file (or a /proc/self/fd path),
    returned, or written to ``out`` (then b"" is returned)."""
    try:
        obj = symbolic.Archive.open(path).get_object(arch="x86_64")
        buf = out if out is not None else io.BytesIO()
        symbolic.CfiCache.from_object(obj).write_to(buf)
    except (symbolic.SymbolicError, LookupError, ValueError, OSError) as exc:
        # LookupError: an ELF without an x86-64 object (another architecture).
        raise TableError(f"{path}: {(str(exc).splitlines() or [type(exc).__name__])[0]}") from exc
    return b"" if out is not None else buf.getvalue()  # type: ignore[union-attr]


def build_table(fd: int, path: str, max_rows: int = L.MAX_TABLE_ROWS) -> UnwindTable:
    """The table of the ELF file open on ``fd`` (``path`` names it in errors).

    symbolic's text goes through a temporary file, read back line by line: for a 110 MB
    libLLVM it is 36 MB, which would otherwise sit in memory next to its list of lines."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as text:
        # Go binaries: rows from their own .gopclntab, so a stripped build unwinds too.
        if not go_cfi_text(fd, text):
            cfi_text(f"/proc/self/fd/{fd}", text)
        text.seek(0)
        try:
            stops, entry = _elf_stops(fd)
            rows = build_rows(text, stops, max_rows=max_rows, entry=entry)
        except CfiError as exc:
            raise TableError(f"{path}: {exc}") from exc
    return UnwindTable(binary_key(fd), path, rows, time.perf_counter() - started)
