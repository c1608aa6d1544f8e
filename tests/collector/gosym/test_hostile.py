"""Malformed copies of a real Go binary: the Go tables fail with GoSymError (an ElfError) or
yield fewer frames, never another exception; the symbolizer counts them and goes on."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from collector.elf import ElfError, ElfReader
from collector.gosym import GoBinary
from collector.proc import PinnedFile
from processors.symbolize.binary import Binary
from processors.symbolize.config import SymbolizeConfig
from tests.support import gotoolchains as gt


@pytest.fixture(scope="module")
def stripped() -> bytes:
    gt.require(gt.NEW)
    return gt.workload("pgohot", gt.NEW, stripped=True).read_bytes()


def _table_offset(data: bytes) -> int:
    at = data.find(struct.pack("<I", 0xFFFFFFF1) + b"\0\0\x01\x08")
    assert at > 0
    return at


def _copy(tmp: Path, data: bytes, name: str) -> Path:
    p = tmp / name
    p.write_bytes(data)
    return p


@pytest.mark.parametrize(
    ("word", "value"),
    [(1, 1 << 40), (4, 1 << 40), (8, 1 << 40), (1, 0), (7, 12)],
    ids=["nfunc-huge", "funcname-past", "pcln-past", "nfunc-zero", "pctab-inside-header"],
)
def test_bad_header_words(stripped: bytes, tmp_path: Path, word: int, value: int) -> None:
    at = _table_offset(stripped)
    data = bytearray(stripped)
    struct.pack_into("<Q", data, at + 8 * word, value)
    path = _copy(tmp_path, bytes(data), "bad")
    try:
        with GoBinary.open(str(path)) as go:
            for fn in list(go.functions())[:200]:
                go.frames(fn.entry)
    except ElfError:
        pass


def test_scrambled_function_records(stripped: bytes, tmp_path: Path) -> None:
    """Random bytes over the function records: lookups return what they can."""
    at = _table_offset(stripped)
    pcln = struct.unpack_from("<Q", stripped, at + 8 * 8)[0]
    data = bytearray(stripped)
    start = at + pcln + 64 * 1024
    data[start : start + 64 * 1024] = os.urandom(64 * 1024)
    with GoBinary.open(str(_copy(tmp_path, bytes(data), "scrambled"))) as go:
        n = 0
        for fn in go.functions():
            n += len(go.frames(fn.entry)) + len(go.frames(fn.end - 1))
        assert n > 0


def test_truncated_binary(stripped: bytes, tmp_path: Path) -> None:
    path = _copy(tmp_path, stripped[: len(stripped) // 2], "half")
    with pytest.raises(ElfError):
        GoBinary.open(str(path))


def test_symbolizer_counts_bad_go_tables(stripped: bytes, tmp_path: Path) -> None:
    at = _table_offset(stripped)
    data = bytearray(stripped)
    struct.pack_into("<Q", data, at + 8 * 8, 1 << 40)  # pclnOffset past the table
    path = _copy(tmp_path, bytes(data), "badgo")
    fd = os.open(path, os.O_RDONLY)
    counted: list[str] = []
    pinned = PinnedFile(fd, os.fstat(fd), str(path))
    try:
        b = Binary(pinned, {}, SymbolizeConfig(), counted.append)
        assert not b.is_go and b.malformed and "go_tables_malformed" in counted
        b.lines_at(0x1000)  # the ELF path answers; nothing raises
        b.close()
    finally:
        pinned.close()
    with open(path, "rb") as f:
        assert ElfReader(f.fileno()).build_id()  # the ELF itself is still fine


@pytest.mark.parametrize("version", [gt.DEBIAN, gt.NEW, gt.LATEST])
def test_no_section_headers(tmp_path: Path, version: str) -> None:
    """Section headers gone (e_shoff = e_shnum = 0, as sstrip leaves a binary): build info and
    the line table are found by their magic in the segments, with the same result."""
    gt.require(version)
    path = gt.workload("pgohot", version, stripped=True)
    data = bytearray(path.read_bytes())
    struct.pack_into("<Q", data, 0x28, 0)  # e_shoff
    struct.pack_into("<HH", data, 0x3C, 0, 0)  # e_shnum, e_shstrndx
    bare = _copy(tmp_path, bytes(data), "bare")
    with open(bare, "rb") as f:
        assert ElfReader(f.fileno()).section_list == []
    with GoBinary.open(str(path)) as a, GoBinary.open(str(bare)) as b:
        assert b.version == f"go{version}" and b.module == "example.com/pgohot"
        assert list(b.functions()) == list(a.functions())
        entry, end = a.function("main.digest")
        assert [b.frames(pc) for pc in range(entry, end)] == [
            a.frames(pc) for pc in range(entry, end)
        ]
        assert b.gofunc == a.gofunc and b.table.text_start == a.table.text_start
