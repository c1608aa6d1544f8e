"""The on-disk SymCache store when its directory fails under it: counted, logged once, and
the symbolizer goes on (the cache then lives in memory only)."""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path

import pytest

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
    assert store.load("a") == (None, b"", False)  # nothing there: a miss, not corruption
