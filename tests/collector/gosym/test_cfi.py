"""Call-frame rows from .gopclntab (collector/gosym/cfi.py) against the independent ones:
symbolic's reading of the unstripped build's .debug_frame, which the Go linker writes from the
same frame layout. Rows must be identical; only function sizes differ (ours run to the next
function, DWARF stops before the padding)."""

from __future__ import annotations

import io
import os

import pytest

from collector.gosym.cfi import go_cfi_text
from collector.unwind.table import build_table, cfi_text
from tests.support import gotoolchains as gt


def _rows(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        parts = line.split(" ")
        if parts[2] == "INIT":  # STACK CFI INIT <addr> <size> <rules>: drop the size
            del parts[4]
        out.append(" ".join(parts))
    return out


@pytest.mark.parametrize("version", [gt.DEBIAN, gt.OLD, gt.MID, gt.NEW, gt.LATEST])
def test_rows_equal_debug_frame(version: str) -> None:
    gt.require(version)
    full = gt.workload("pgohot", version)
    fd = os.open(full, os.O_RDONLY)
    try:
        buf = io.BytesIO()
        assert go_cfi_text(fd, buf)
    finally:
        os.close(fd)
    ours, theirs = _rows(buf.getvalue().decode()), _rows(cfi_text(str(full)).decode())
    assert len(ours) > 5000
    assert ours == theirs


def test_stripped_build_gets_a_table() -> None:
    gt.require(gt.NEW)
    stripped = gt.workload("pgohot", gt.NEW, stripped=True)
    fd = os.open(stripped, os.O_RDONLY)
    try:
        table = build_table(fd, str(stripped))
    finally:
        os.close(fd)
    assert len(table) > 5000


def test_not_go_is_left_to_symbolic() -> None:
    fd = os.open("/bin/true", os.O_RDONLY)
    try:
        assert not go_cfi_text(fd, io.BytesIO())
    finally:
        os.close(fd)
