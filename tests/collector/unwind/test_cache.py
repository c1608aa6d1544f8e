"""The on-disk table cache: real tables of real binaries round-trip; corrupt, foreign, hostile
and unreadable files are rejected and counted (the table is then built again); the directory
stays under its bound; a read-only file system turns writing off with one log line."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from collector.unwind import cache as C
from collector.unwind.breakpad import CfiStats, Rows
from collector.unwind.cache import TableCache
from collector.unwind.table import UnwindTable, build_table
from tests.support.workloads import build

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


def _table(path: str) -> UnwindTable:
    fd = os.open(path, os.O_RDONLY)
    try:
        return build_table(fd, path)
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def libc() -> UnwindTable:
    return _table(LIBC)


@pytest.fixture(scope="module")
def small() -> UnwindTable:
    return _table(str(build("unwind_callers", ("-O2", "-fomit-frame-pointer"))))


def _only_file(d: Path) -> Path:
    files = list(d.glob("*" + C.SUFFIX))
    assert len(files) == 1, files
    return files[0]


def test_a_saved_table_loads_back_equal(tmp_path: Path, libc: UnwindTable) -> None:
    cache = TableCache(tmp_path / "c")
    assert cache.load(libc.key) is None  # nothing yet: a miss
    cache.save(libc)
    got = cache.load(libc.key)
    assert got is not None and got.from_cache and not libc.from_cache
    assert (got.key, got.path, got.base, len(got)) == (libc.key, libc.path, libc.base, len(libc))
    assert got.rows.tobytes() == libc.rows.tobytes()
    stats = cache.stats()
    assert (stats["cache_hits"], stats["cache_misses"], stats["cache_writes"]) == (1, 1, 1)
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o700


def test_a_corrupt_file_is_rejected_counted_and_removed(tmp_path: Path, libc: UnwindTable) -> None:
    cache = TableCache(tmp_path)
    cache.save(libc)
    f = _only_file(tmp_path)
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x40  # one bit in the rows
    f.write_bytes(bytes(data))
    assert cache.load(libc.key) is None
    assert cache.stats()["cache_rejected"] == 1 and not f.exists()
    f.write_bytes(bytes(data[:100]))  # a torn write
    assert cache.load(libc.key) is None and cache.stats()["cache_rejected"] == 2


def test_another_binarys_table_under_this_name_is_never_used(
    tmp_path: Path, libc: UnwindTable, small: UnwindTable
) -> None:
    cache = TableCache(tmp_path)
    cache.save(small)
    os.rename(_only_file(tmp_path), cache._file(libc.key))  # valid file, wrong key inside
    assert cache.load(libc.key) is None and cache.stats()["cache_rejected"] == 1


def _forged(table: UnwindTable, rows: array) -> UnwindTable:
    return UnwindTable(table.key, table.path, Rows(table.base, rows, CfiStats()), 0.0)


def test_a_well_formed_file_with_hostile_rows_is_rejected(
    tmp_path: Path, small: UnwindTable
) -> None:
    """A valid checksum is not enough: rows out of order (the BPF search needs them sorted)
    and kind bytes the builder never writes are refused too."""
    cache = TableCache(tmp_path)
    shuffled = array("Q", reversed(small.rows.values))
    bad_kind = array("Q", small.rows.values)
    bad_kind[1] |= 0xFF << 56
    for rows in (shuffled, bad_kind):
        data = C.encode(_forged(small, rows))
        cache._file(small.key).write_bytes(data)
        assert hashlib.sha256(data[:-32]).digest() == data[-32:]
        assert cache.load(small.key) is None
    assert cache.stats()["cache_rejected"] == 2


def test_files_or_a_directory_others_may_write_are_not_trusted(
    tmp_path: Path, small: UnwindTable, caplog: pytest.LogCaptureFixture
) -> None:
    cache = TableCache(tmp_path / "c")
    cache.save(small)
    f = _only_file(tmp_path / "c")
    f.chmod(0o666)
    assert cache.load(small.key) is None and cache.stats()["cache_rejected"] == 1
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    other = TableCache(shared)
    with caplog.at_level(logging.WARNING, logger=C.__name__):
        other.save(small)
        assert other.load(small.key) is None
    assert not list(shared.iterdir())
    assert sum("cache off" in r.message for r in caplog.records) == 1


def test_the_directory_stays_under_its_bound_least_recently_used_first(
    tmp_path: Path, libc: UnwindTable, small: UnwindTable
) -> None:
    cache = TableCache(tmp_path, max_bytes=len(C.encode(libc)) + len(C.encode(small)) // 2)
    cache.save(small)
    first = _only_file(tmp_path)
    os.utime(first, (1, 1))  # long unused
    cache.save(libc)
    assert [p.name for p in tmp_path.glob("*" + C.SUFFIX)] == [cache._file(libc.key).name]
    assert cache.stats()["cache_evicted"] == 1
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= cache.max_bytes


_RO_CHILD = """
import logging, sys
from collector.unwind.cache import TableCache
from collector.unwind.breakpad import CfiStats, Rows
from collector.unwind.table import UnwindTable
from array import array
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
t = UnwindTable("build-id:00", "/x", Rows(0, array("Q", [1 << 56]), CfiStats()), 0.0)
c = TableCache(sys.argv[1])
for _ in range(3):
    c.save(t)
print(c.stats()["cache_write_failed"], c.load("build-id:00") is None)
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="root, unshare")
def test_a_read_only_file_system_turns_writing_off_with_one_line(tmp_path: Path) -> None:
    d = tmp_path / "ro"
    d.mkdir(mode=0o700)
    script = f'mount -t tmpfs -o ro,mode=0700 none {d} && exec "$0" -c "$1" {d}'
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
    out = subprocess.run(
        [*argv, sys.executable, _RO_CHILD],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "True"]  # one failed write, then no more tries
    assert out.stderr.count("cache off") == 1 and "Read-only file system" in out.stderr
