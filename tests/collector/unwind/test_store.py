"""Row slices: allocation, sharing by key, idle tables kept until their space is needed.

The store writes into any writable buffer; here a bytearray stands where the BPF array's mmap
goes in production (the BPF tests use the real one), with real tables of real binaries."""

from __future__ import annotations

import os

import pytest

from collector.unwind import layout as L
from collector.unwind.store import SliceAllocator, TableStore
from collector.unwind.table import TableError, UnwindTable, build_table
from tests.support.workloads import build

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


def _table(path: str) -> UnwindTable:
    fd = os.open(path, os.O_RDONLY)
    try:
        return build_table(fd, path)
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def tables() -> dict[str, UnwindTable]:
    small = str(build("unwind_callers", ("-O2", "-fomit-frame-pointer")))
    return {"libc": _table(LIBC), "small": _table(small)}


def test_allocator_first_fit_and_coalescing() -> None:
    a = SliceAllocator(100)
    x, y, z = a.alloc(30), a.alloc(30), a.alloc(30)
    assert (x, y, z) == (0, 30, 60)
    assert a.alloc(11) is None
    a.free(30, 30)
    assert a.alloc(40) is None  # 30 + 10 free, not contiguous
    a.free(0, 30)
    assert a.largest_free == 60  # [0, 60) coalesced
    assert a.alloc(60) == 0
    a.free(0, 60)
    a.free(60, 30)
    assert a.largest_free == 100 and a.used == 0
    with pytest.raises(ValueError):
        a.alloc(0)


def test_one_slice_per_binary_shared_by_every_acquire(tables: dict[str, UnwindTable]) -> None:
    libc = tables["libc"]
    buf = bytearray(8 * 100_000)
    store = TableStore(memoryview(buf), 100_000)
    builds = []

    def build_libc() -> UnwindTable:
        builds.append(1)
        return libc

    first = store.acquire(libc.key, build_libc)
    again = store.acquire(libc.key, build_libc)
    assert first is again and first is not None and first.refs == 2
    assert len(builds) == 1
    start = first.first * L.ROW.size
    assert bytes(buf[start : start + libc.nbytes]) == libc.rows.tobytes()
    store.release(libc.key)
    store.release(libc.key)
    store.release(libc.key)  # one too many: ignored
    stats = store.stats()
    assert stats["tables_idle"] == 1 and stats["tables_loaded"] == 1  # kept for the next one
    assert store.acquire(libc.key, build_libc) is first and len(builds) == 1
    store.close()


def test_idle_tables_make_room_and_busy_ones_never_move(tables: dict[str, UnwindTable]) -> None:
    libc, small = tables["libc"], tables["small"]
    cap = len(libc) + len(small) + 10
    store = TableStore(memoryview(bytearray(8 * cap)), cap)
    assert store.acquire("small", lambda: small) is not None
    assert store.acquire("libc", lambda: libc) is not None
    # A second libc-sized table does not fit while libc is in use.
    assert store.acquire("libc2", lambda: libc) is None
    assert store.stats()["tables_no_space"] == 1
    store.release("libc")  # idle now: its space can be taken
    got = store.acquire("libc2", lambda: libc)
    assert got is not None
    stats = store.stats()
    assert stats["tables_evicted"] == 1 and stats["tables_loaded"] == 2
    assert stats["rows_used"] == len(libc) + len(small)
    store.close()


def test_a_binary_without_a_table_is_not_rebuilt_for_every_process() -> None:
    store = TableStore(memoryview(bytearray(8 * 10)), 10)
    calls = []

    def fail() -> UnwindTable:
        calls.append(1)
        raise TableError("no call-frame information")

    assert store.acquire("k", fail) is None
    assert store.acquire("k", fail) is None
    assert len(calls) == 1
    assert store.failure("k") == "no call-frame information"
    assert store.stats()["tables_failed"] == 1
    store.close()


def test_recently_idle_tables_stay_and_a_table_without_room_is_not_retried_at_once(
    tables: dict[str, UnwindTable],
) -> None:
    """An exec storm beside a process with a huge table must not churn: a table idle for a
    moment is not evicted for another, and one that found no room waits before it is read
    or built again."""
    libc, small = tables["libc"], tables["small"]
    now = [100.0]
    cap = len(libc) + len(small) + 10
    store = TableStore(memoryview(bytearray(8 * cap)), cap, min_idle_s=10, clock=lambda: now[0])
    assert store.acquire("libc", lambda: libc) is not None
    store.release("libc")  # idle since t=100
    builds = []

    def big() -> UnwindTable:
        builds.append(1)
        return libc

    now[0] = 105.0
    assert store.acquire("other", big) is None  # libc idle 5 s only: kept
    assert store.acquire("other", big) is None  # no room a moment ago: not built again
    stats = store.stats()
    assert (len(builds), stats["tables_no_space"], stats["tables_no_space_skipped"]) == (1, 1, 1)
    assert stats["tables_loaded"] == 1 and stats["tables_evicted"] == 0
    now[0] = 140.0  # libc idle 40 s, and the retry window is over
    assert store.acquire("other", big) is not None and len(builds) == 2
    assert store.stats()["tables_evicted"] == 1
    store.close()
