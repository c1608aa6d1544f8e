"""Tables in the BPF row array: one contiguous slice per binary, shared by every process.

A slice is written before any mapping refers to it and freed only after no process entry does,
so the BPF walker never reads a half-written table. Tables whose last process went away stay
loaded (idle, least recently used first out) until their space is needed: on a busy host the
same libc is mapped again within milliseconds, and rebuilding it costs ~0.1 s.
"""

from __future__ import annotations

import time
from bisect import insort
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from collector.unwind import layout as L
from collector.unwind.table import TableError, UnwindTable

MAX_FAILED = 4096  # binaries remembered as having no table, so they are not retried per process
NO_ROOM_RETRY_S = 30.0  # a table that did not fit is not read or built again for this long


class SliceAllocator:
    """First-fit allocation of [start, start + n) ranges in [0, capacity), coalescing on free."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free: list[tuple[int, int]] = [(0, capacity)] if capacity > 0 else []
        self.used = 0

    def alloc(self, n: int) -> int | None:
        if n <= 0:
            raise ValueError("slice length must be positive")
        for i, (start, length) in enumerate(self._free):
            if length >= n:
                if length == n:
                    del self._free[i]
                else:
                    self._free[i] = (start + n, length - n)
                self.used += n
                return start
        return None

    def free(self, start: int, n: int) -> None:
        insort(self._free, (start, n))
        self.used -= n
        out: list[tuple[int, int]] = []
        for s, ln in self._free:
            if out and out[-1][0] + out[-1][1] == s:
                out[-1] = (out[-1][0], out[-1][1] + ln)
            else:
                out.append((s, ln))
        self._free = out

    @property
    def largest_free(self) -> int:
        return max((ln for _, ln in self._free), default=0)


@dataclass(slots=True)
class Loaded:
    """A table in the BPF array. Its rows live only there: the Python copy is dropped once
    written (libLLVM's would be 7.6 MB of the collector's memory)."""

    path: str
    base: int  # link-time vaddr of row pc 0
    count: int  # rows
    first: int  # index of its first row in the BPF array
    refs: int = 0


class TableStore:
    """Binary key -> table loaded at a slice of ``rows`` (a writable buffer: the mmap of the
    BPF row array, 8 bytes per row).

    ``min_idle_s``: an idle table is evicted for another only once it has been idle that long,
    and a table that found no room is not read or built again for ``NO_ROOM_RETRY_S``. Without
    both, a host whose tables outgrow the array churns (it is tried again sooner when room
    has appeared since): in an exec storm beside Python
    processes mapping libLLVM (1.4M rows), gcc's tables were evicted and read back 622 times in
    a minute, each read of the big one 0.4 s of CPU."""

    def __init__(
        self,
        rows: memoryview,
        capacity: int,
        min_idle_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(rows) < capacity * L.ROW.size:
            raise ValueError("row buffer smaller than its capacity")
        self._rows = rows
        self._alloc = SliceAllocator(capacity)
        self._loaded: dict[str, Loaded] = {}
        self._idle: OrderedDict[str, float] = OrderedDict()  # key -> idle since
        # key -> (when it did not fit, its rows)
        self._no_room: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._min_idle_s = min_idle_s
        self._clock = clock
        self._failed: OrderedDict[str, str] = OrderedDict()
        self.counters = {
            "tables_built": 0,
            "tables_from_cache": 0,
            "tables_failed": 0,
            "tables_evicted": 0,
            "tables_no_space": 0,
            "tables_no_space_skipped": 0,
            "table_build_seconds": 0.0,
        }

    def acquire(self, key: str, build: Callable[[], UnwindTable]) -> Loaded | None:
        """The loaded table for ``key`` (built by ``build`` if needed), one reference more;
        None when the binary has no usable table or the array has no room (counted)."""
        got = self._loaded.get(key)
        if got is None:
            if key in self._failed:
                return None
            tried = self._no_room.get(key)
            if tried is not None:
                at, n = tried
                if self._clock() - at < NO_ROOM_RETRY_S and n > self._room():
                    self.counters["tables_no_space_skipped"] += 1
                    return None
                del self._no_room[key]
            try:
                table = build()
            except TableError as exc:
                self._remember_failure(key, str(exc))
                return None
            if table.from_cache:
                self.counters["tables_from_cache"] += 1
            else:
                self.counters["tables_built"] += 1
                self.counters["table_build_seconds"] += table.build_seconds
            got = self._place(key, table)
            if got is None:
                return None
        got.refs += 1
        self._idle.pop(key, None)
        return got

    def release(self, key: str) -> None:
        got = self._loaded.get(key)
        if got is None or got.refs <= 0:
            return
        got.refs -= 1
        if got.refs == 0:
            self._idle[key] = self._clock()

    def failure(self, key: str) -> str | None:
        return self._failed.get(key)

    def _remember_failure(self, key: str, why: str) -> None:
        self.counters["tables_failed"] += 1
        self._failed[key] = why
        while len(self._failed) > MAX_FAILED:
            self._failed.popitem(last=False)

    def _place(self, key: str, table: UnwindTable) -> Loaded | None:
        n = len(table)
        first = self._alloc.alloc(n)
        old_enough = self._clock() - self._min_idle_s
        while first is None and self._idle:
            oldest, since = next(iter(self._idle.items()))
            if since > old_enough:
                break  # in use a moment ago: likely needed again soon
            self._evict(oldest)
            first = self._alloc.alloc(n)
        if first is None:
            self.counters["tables_no_space"] += 1
            self._no_room[key] = (self._clock(), n)
            while len(self._no_room) > MAX_FAILED:
                self._no_room.popitem(last=False)
            return None
        size = L.ROW.size
        self._rows[first * size : (first + n) * size] = table.rows.tobytes()
        loaded = Loaded(table.path, table.base, n, first)
        self._loaded[key] = loaded
        return loaded

    def _room(self) -> int:
        """Rows free now or held by tables idle long enough to be evicted (an upper bound:
        the free space may be split)."""
        old_enough = self._clock() - self._min_idle_s
        evictable = sum(self._loaded[k].count for k, t in self._idle.items() if t <= old_enough)
        return self._alloc.capacity - self._alloc.used + evictable

    def _evict(self, key: str) -> None:
        self._idle.pop(key, None)
        got = self._loaded.pop(key)
        self._alloc.free(got.first, got.count)
        self.counters["tables_evicted"] += 1

    def close(self) -> None:
        """Release the row buffer (so its mmap can be closed)."""
        self._rows.release()

    def stats(self) -> dict[str, float]:
        return {
            **self.counters,
            "tables_loaded": len(self._loaded),
            "tables_idle": len(self._idle),
            "rows_used": self._alloc.used,
            "rows_capacity": self._alloc.capacity,
        }
