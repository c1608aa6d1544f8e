"""collector.elf.debuglink on real files: libc's .gnu_debuglink and libc6-dbg's build-id file,
and a debuglink section whose bytes lie (truncated, name too long)."""

from __future__ import annotations

import os
import subprocess
import zlib
from pathlib import Path

import pytest

from collector.elf import ElfReader, find_debug_file, read_debuglink
from collector.elf.debuglink import build_id_path, file_crc32

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"


def _objcopy_section(path: Path, data: bytes) -> Path:
    """A copy of /bin/true with its .gnu_debuglink replaced by ``data``."""
    blob = path.with_suffix(".bin")
    blob.write_bytes(data)
    out = path.with_suffix(".elf")
    subprocess.run(
        [
            "objcopy",
            "--remove-section=.gnu_debuglink",
            "--add-section",
            f".gnu_debuglink={blob}",
            "/bin/true",
            str(out),
        ],
        check=True,
    )
    return out


def test_libc_debuglink_and_build_id_file() -> None:
    fd = os.open(LIBC, os.O_RDONLY)
    try:
        elf = ElfReader(fd)
        link = read_debuglink(elf)
        assert link is not None and link.name and "/" not in link.name
        bid = elf.build_id()
        found = find_debug_file(bid, link, LIBC, 1 << 30)
        path = build_id_path(bid)
        if path is None or not os.path.exists(path):
            assert found is None
            pytest.skip("libc6-dbg is not installed")
        assert found is not None and found.how == "build-id" and found.path == path
        assert ElfReader(found.fd).build_id() == bid
        os.close(found.fd)
    finally:
        os.close(fd)


def test_file_crc32_is_zlibs_and_bounded(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(os.urandom(3 << 20))
    fd = os.open(f, os.O_RDONLY)
    try:
        assert file_crc32(fd, 3 << 20, 4 << 20) == zlib.crc32(f.read_bytes())
        assert file_crc32(fd, 3 << 20, 1 << 20) is None  # past the budget: not read
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "data",
    [b"abc", b"x" * 400 + b"\0\0\0\0\0", b"dir/name.debug\0\0" + b"\1\2\3\4"],
    ids=["no-nul", "too-long", "a-path"],
)
def test_lying_debuglink_is_a_problem_not_an_exception(tmp_path: Path, data: bytes) -> None:
    path = _objcopy_section(tmp_path / "t", data)
    fd = os.open(path, os.O_RDONLY)
    try:
        elf = ElfReader(fd)
        assert read_debuglink(elf) is None
        assert any(".gnu_debuglink" in p for p in elf.problems)
    finally:
        os.close(fd)
