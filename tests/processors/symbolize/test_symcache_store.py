"""The on-disk SymCache store when its directory fails under it: counted, logged once, and
the symbolizer goes on (the cache then lives in memory only)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from collector.elf import ElfReader, Limits
from processors.symbolize.lines import LineTable, build_symcache, image_base
from processors.symbolize.symcache_store import SymCacheStore


def test_a_directory_that_goes_away_is_counted_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    counts: Counter[str] = Counter()
    store = SymCacheStore(str(tmp_path / "symc"), 1 << 20, count=lambda n: counts.update((n,)))
    assert store.usable
    shutil.rmtree(tmp_path / "symc")  # e.g. a tmpfs cleaner, or a volume unmounted
    with caplog.at_level(logging.WARNING):
        assert not store.save("a", b"x" * 100)
        assert not store.save("b", b"x" * 100)
    assert counts["symcache_write_failed"] == 2
    assert caplog.text.count("cannot write symcache") == 1
    assert counts["symcache_list_failed"] >= 1  # the size bound could not be applied
    assert store.load("a") == (None, 0, False)  # nothing there: a miss, not corruption


def _built(tmp_path: Path) -> tuple[LineTable, bytes, int]:
    """A SymCache of a small C program built with -g here, its bytes, and an address of f."""
    src = tmp_path / "f.c"
    src.write_text("int f(int x) {\n  return x * 3 + 1;\n}\nint main(void) { return f(2); }\n")
    out = tmp_path / "f"
    subprocess.run(["gcc", "-g", "-O0", str(src), "-o", str(out)], check=True)
    fd = os.open(out, os.O_RDONLY)
    elf = ElfReader(fd, Limits(max_read_bytes=1 << 26))
    cache, blob = build_symcache(elf)
    nm = subprocess.run(["nm", str(out)], check=True, capture_output=True, text=True).stdout
    f_addr = next(int(line.split()[0], 16) for line in nm.splitlines() if line.endswith(" f"))
    return LineTable(cache, image_base(elf), len(blob)), blob, f_addr + 4


def test_a_saved_cache_is_mapped_not_read_and_survives_eviction(tmp_path: Path) -> None:
    """load maps the file (its bytes are not held by the collector), answers as the built
    cache does, and keeps answering after the file is evicted (an unlinked file stays whole)."""
    built, blob, addr = _built(tmp_path)
    store = SymCacheStore(str(tmp_path / "symc"), 1 << 24)
    assert store.save("k", blob)
    cache, size, corrupt = store.load("k")
    assert cache is not None and size == len(blob) and not corrupt
    path = str(tmp_path / "symc" / "k.symc")
    assert path in Path("/proc/self/maps").read_text()
    mapped = LineTable(cache, built.base, size)
    assert mapped.lookup(addr) == built.lookup(addr) != []
    os.unlink(path)
    assert mapped.lookup(addr) == built.lookup(addr)


def test_a_corrupt_file_is_deleted_and_reported(tmp_path: Path) -> None:
    store = SymCacheStore(str(tmp_path / "symc"), 1 << 20)
    _built_table, blob, _addr = _built(tmp_path)
    for junk in (b"SYMC" + b"\xff" * 60, blob[: len(blob) // 2], b"xy"):
        path = tmp_path / "symc" / "k.symc"
        path.write_bytes(junk)
        assert store.load("k") == (None, 0, True)
        assert not path.exists()
