"""The ELF reader against real binaries, checked with binutils' readelf as the other reader."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from collector.elf import ElfError, ElfReader, load_function_symbols
from tests.support import symbolize_fixtures as fx

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"


@pytest.fixture(scope="module")
def bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if fx.have_compilers() or shutil.which("readelf") is None:
        pytest.skip("needs gcc, g++, strip and readelf")
    return fx.build(tmp_path_factory.mktemp("elf"))


def _open(path: Path | str) -> ElfReader:
    return ElfReader(os.open(path, os.O_RDONLY | os.O_CLOEXEC))


def test_build_id_matches_readelf(bins: dict[str, Path]) -> None:
    out = subprocess.run(
        ["readelf", "-n", str(bins["pie"])], capture_output=True, text=True, check=True
    ).stdout
    expected = re.search(r"Build ID: ([0-9a-f]+)", out)
    assert expected is not None
    assert _open(bins["pie"]).build_id() == expected.group(1)


def test_symbols_and_load_segments_agree_with_readelf(bins: dict[str, Path]) -> None:
    elf = _open(bins["nopie"])
    out = subprocess.run(
        ["readelf", "-sW", str(bins["nopie"])], capture_output=True, text=True, check=True
    ).stdout
    m = re.search(r"([0-9a-f]{16})\s+\d+\s+FUNC\s+\w+\s+\w+\s+\d+\s+leaf_work$", out, re.M)
    assert m is not None
    addr = int(m.group(1), 16)
    table = load_function_symbols(elf).table
    assert table.lookup(addr + 3) == ("leaf_work", addr)
    # Non-PIE: the first PT_LOAD maps file offset 0 at 0x400000.
    assert elf.file_offset_to_vaddr(0) == 0x400000
    assert elf.section(".text") is not None


def test_stripped_binary_falls_back_to_dynsym() -> None:
    table = load_function_symbols(_open(LIBC)).table
    assert len(table) > 1000  # Debian's libc carries no .symtab
    names = {table.name_at(i) for i in range(len(table))}
    assert "malloc" in names


def test_not_an_elf_file(tmp_path: Path) -> None:
    p = tmp_path / "x"
    p.write_bytes(b"#!/bin/sh\n" * 10)
    with pytest.raises(ElfError):
        _open(p)
