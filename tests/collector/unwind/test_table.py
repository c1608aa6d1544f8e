"""Tables of real binaries, checked row by row against binutils' own CFI interpreter
(``readelf --debug-dump=frames-interp``), an independent reader of the same .eh_frame."""

from __future__ import annotations

import os
import re
import subprocess
from bisect import bisect_right
from pathlib import Path

import pytest

from collector.elf import ElfReader
from collector.unwind import layout as L
from collector.unwind.table import TableError, UnwindTable, binary_key, build_table
from tests.support.workloads import build

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
LD_SO = "/lib64/ld-linux-x86-64.so.2"
_FDE = re.compile(r"FDE cie=\w+ pc=([0-9a-f]+)\.\.([0-9a-f]+)")


def _table(path: str) -> UnwindTable:
    fd = os.open(path, os.O_RDONLY)
    try:
        return build_table(fd, path)
    finally:
        os.close(fd)


def readelf_fdes(path: str) -> list[tuple[int, int, list[tuple[int, str, str, str]]]]:
    """(start, end, rows) per FDE; rows are (loc, cfa, rbp, ra) in readelf's spelling."""
    # readelf exits 1 on binaries without .debug_* sections while printing .eh_frame fine.
    out = subprocess.run(
        ["readelf", "--debug-dump=frames-interp", path], capture_output=True, text=True
    ).stdout
    assert "Contents of the .eh_frame section" in out
    fdes: list[tuple[int, int, list[tuple[int, str, str, str]]]] = []
    cols: list[str] = []
    for line in out.splitlines():
        if m := _FDE.search(line):
            fdes.append((int(m.group(1), 16), int(m.group(2), 16), []))
            cols = []
        elif " CIE" in line:
            cols = []
            fdes.append((0, 0, []))  # a CIE's own rows (LOC 0) belong to no function
        elif line.strip().startswith("LOC"):
            cols = line.split()
        elif cols and fdes and fdes[-1][1] and re.match(r"^[0-9a-f]{16} ", line):
            # "r10 (r10)": a register rule names the register twice; keep one token.
            vals = dict(zip(cols, re.sub(r" \(\w+\)", "", line).split(), strict=False))
            fdes[-1][2].append(
                (int(vals["LOC"], 16), vals["CFA"], vals.get("rbp", "u"), vals["ra"])
            )
    return [f for f in fdes if f[1]]


def ours_at(table: UnwindTable, pcs: list[int], vaddr: int) -> tuple[int, int, int, int, int]:
    """(cfa rule, cfa offset, rbp rule, rbp offset, stop reason) in effect at ``vaddr``."""
    i = bisect_right(pcs, vaddr - table.base) - 1
    assert i >= 0
    _pc, cfa8, rbp8, kind = L.ROW.unpack(table.rows.values[i].to_bytes(8, "little"))
    return kind & 3, cfa8 * 8, (kind >> 2) & 3, rbp8 * 8, kind >> 4


@pytest.mark.parametrize("path", [LIBC, "workload"])
def test_rows_agree_with_readelf(path: str) -> None:
    if path == "workload":
        path = str(build("unwind_callers", ("-O2", "-fomit-frame-pointer")))
    table = _table(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        plt = ElfReader(fd).section(".plt")
    finally:
        os.close(fd)
    assert plt is not None
    checked = skipped = 0
    pcs = table.rows.pcs()
    rows = [r for _s, _e, fde_rows in readelf_fdes(path) for r in fde_rows]
    for loc, cfa, rbp, ra in rows:
        got = ours_at(table, pcs, loc)
        if plt.addr <= loc < plt.addr + plt.size:
            assert got[0] == L.CFA_STOP and got[4] == L.PLT, (hex(loc), got)
            skipped += 1
            continue
        m = re.fullmatch(r"(rsp|rbp)\+(\d+)", cfa)
        if m is None or ra not in ("c-8", "u"):
            skipped += 1  # expressions and other registers: stop rows or PLT
            assert got[0] == L.CFA_STOP, (hex(loc), cfa, got)
            continue
        if ra == "u":
            assert got[0] == L.CFA_STOP and got[4] == L.END, (hex(loc), got)
            checked += 1
            continue
        want_cfa = L.CFA_RSP if m.group(1) == "rsp" else L.CFA_RBP
        assert (got[0], got[1]) == (want_cfa, int(m.group(2))), (hex(loc), cfa, got)
        if rbp.startswith("c-"):
            assert (got[2], got[3]) == (L.RBP_SAVED, int(rbp[2:])), (hex(loc), rbp, got)
        elif rbp in ("u", "s"):
            # Breakpad cannot say "restored": after `pop rbp` the saved-slot rule stays, and
            # it still reads the right value (the slot is not overwritten in that frame).
            assert got[2] in (L.RBP_SAME, L.RBP_SAVED), (hex(loc), rbp, got)
        checked += 1
    assert checked > (20_000 if path == LIBC else 20)
    print(f"{path}: {checked} rows agree with readelf, {skipped} are stop rows")


def test_function_ends_without_a_successor_are_stop_rows() -> None:
    table = _table(LIBC)
    fdes = readelf_fdes(LIBC)
    starts = {s for s, _e, _r in fdes}
    ends = {e for _s, e, _r in fdes} - starts
    pcs = table.rows.pcs()
    stops = [ours_at(table, pcs, e) for e in ends]
    assert stops, "libc has gaps between functions"
    assert all(s[0] == L.CFA_STOP for s in stops)


def test_ld_so_entry_point_is_the_outermost_frame() -> None:
    """ld.so's _start is assembly without CFI: a process sampled while ld.so maps its
    libraries (a copy taken at its first sample) used to end in no_row there."""
    fd = os.open(LD_SO, os.O_RDONLY)
    try:
        entry = ElfReader(fd).entry
    finally:
        os.close(fd)
    covered = any(s <= entry < e for s, e, _r in readelf_fdes(LD_SO))
    table = _table(LD_SO)
    got = ours_at(table, table.rows.pcs(), entry + 5)  # the return address after its call
    if covered:  # a ld.so with CFI for _start: its own rule stands
        assert got[0] != L.CFA_STOP or got[4] == L.END
    else:
        assert (got[0], got[4]) == (L.CFA_STOP, L.END), got


def test_libc_table_is_keyed_by_build_id_and_compact() -> None:
    table = _table(LIBC)
    assert table.key.startswith("build-id:")
    assert 10_000 < len(table) < 100_000
    assert table.nbytes == 8 * len(table)
    assert table.stats.malformed == 0
    assert table.stats.stops["plt"] == 1  # libc's .plt


def test_binary_without_build_id_is_keyed_by_identity(tmp_path: Path) -> None:
    src = tmp_path / "a.c"
    src.write_text("int main(void) { return 0; }\n")
    exe = tmp_path / "a"
    subprocess.run(["gcc", "-O2", "-Wl,--build-id=none", "-o", exe, src], check=True)
    fd = os.open(exe, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        assert binary_key(fd) == f"file:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    finally:
        os.close(fd)


def test_files_that_are_not_elf_are_a_table_error(tmp_path: Path) -> None:
    for content in (b"", b"#!/bin/sh\necho hi\n", b"\x7fELF" + b"\xff" * 200):
        p = tmp_path / "bad"
        p.write_bytes(content)
        with pytest.raises(TableError):
            _table(str(p))
