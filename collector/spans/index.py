"""A bounded, time-windowed index of spans per (pid, tid) that answers "which span was running
on this thread at this instant".

Bounds: at most ``max_spans`` spans (the oldest inserted go first, counted), and none whose
end is older than ``retention_ns`` before now (wall clock; samples wait at most max_delay,
so older spans can no longer match). Lookups are a bisect plus a short backward scan: each
thread's spans are sorted by start, and the scan stops at the longest span's length.
"""

from __future__ import annotations

import bisect
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from collector.spans.batch import NO_THREAD, Span, SpanBatch

_Key = tuple[int, int]
# (start_ns, seq, end_ns, span): sorted by start, seq tells equal starts apart.
_Entry = tuple[int, int, int, Span]


class SpanIndex:
    """Counters (via ``count``): spans_indexed, spans_evicted_full, spans_expired,
    spans_too_old, spans_without_pid, spans_peak (the fullest it has been, also
    ``peak_spans``)."""

    def __init__(
        self,
        max_spans: int,
        retention_ns: int,
        count: Callable[[str, int], None] | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.max_spans = max_spans
        self.retention_ns = retention_ns
        self._count = count or (lambda name, n: None)
        self._clock = clock
        self._lock = threading.Lock()
        self._threads: dict[_Key, list[_Entry]] = {}
        self._longest: dict[_Key, int] = {}  # longest span per key: where a scan may stop
        self._fifo: deque[tuple[_Key, _Entry]] = deque()  # insertion order, for eviction
        self._seq = 0
        self.peak_spans = 0

    def __len__(self) -> int:
        return len(self._fifo)

    def add_batch(self, batch: SpanBatch) -> None:
        if batch.without_pid:
            self._count("spans_without_pid", batch.without_pid)
        self.add(batch.spans)

    def add(self, spans: tuple[Span, ...] | list[Span]) -> None:
        horizon = self._clock() - self.retention_ns
        added = old = 0
        with self._lock:
            for sp in spans:
                if sp.end_ns < horizon:
                    old += 1
                    continue
                key = (sp.pid, sp.tid)
                self._seq += 1
                entry = (sp.start_ns, self._seq, sp.end_ns, sp)
                lst = self._threads.get(key)
                if lst is None:
                    lst = self._threads[key] = []
                bisect.insort(lst, entry)
                dur = sp.end_ns - sp.start_ns
                if dur > self._longest.get(key, -1):
                    self._longest[key] = dur
                self._fifo.append((key, entry))
                added += 1
            full = max(0, len(self._fifo) - self.max_spans)
            for _ in range(full):
                self._remove(*self._fifo.popleft())
            expired = self._expire(horizon)
            grew = len(self._fifo) - self.peak_spans
            if grew > 0:
                self.peak_spans += grew
        self._count("spans_indexed", added)
        if grew > 0:  # the fullest it has been, as a counter that only grows
            self._count("spans_peak", grew)
        if old:
            self._count("spans_too_old", old)
        if full:
            self._count("spans_evicted_full", full)
        if expired:
            self._count("spans_expired", expired)

    def expire(self) -> None:
        """Drop spans past retention (also done on every add)."""
        with self._lock:
            n = self._expire(self._clock() - self.retention_ns)
        if n:
            self._count("spans_expired", n)

    def _expire(self, horizon: int) -> int:
        n = 0
        fifo = self._fifo
        # Spans arrive roughly in end order (SDKs export them when they end): the front of
        # the FIFO is the oldest. A late long span may hold a few older ones back until it
        # expires; max_spans still bounds them.
        while fifo and fifo[0][1][2] < horizon:
            self._remove(*fifo.popleft())
            n += 1
        return n

    def _remove(self, key: _Key, entry: _Entry) -> None:
        lst = self._threads[key]
        i = bisect.bisect_left(lst, entry)
        if i < len(lst) and lst[i][1] == entry[1]:
            del lst[i]
        if not lst:
            del self._threads[key]
            del self._longest[key]

    def lookup(self, pid: int, tid: int, t: int) -> Span | None:
        """The innermost span of (pid, tid) holding ``t``; else, among the process's spans
        without a thread.id, the one span open at ``t`` if exactly one is."""
        with self._lock:
            span = self._innermost((pid, tid), t) if tid != NO_THREAD else None
            if span is None:
                span = self._only_open((pid, NO_THREAD), t)
            return span

    def _candidates(self, key: _Key, t: int) -> list[_Entry]:
        lst = self._threads.get(key)
        if not lst:
            return []
        hi = bisect.bisect_right(lst, (t, math.inf))  # first entry starting after t
        lo = bisect.bisect_left(lst, (t - self._longest[key],), 0, hi)
        return lst[lo:hi]

    def _innermost(self, key: _Key, t: int) -> Span | None:
        best: _Entry | None = None
        for e in reversed(self._candidates(key, t)):
            if e[2] < t:
                continue
            if best is not None and e[0] < best[0]:
                break  # an earlier start is an outer span
            if best is None or e[2] < best[2]:  # equal starts: the one ending first is inner
                best = e
        return best[3] if best is not None else None

    def _only_open(self, key: _Key, t: int) -> Span | None:
        found: Span | None = None
        for e in self._candidates(key, t):
            if e[2] >= t:
                if found is not None:
                    return None  # two open at once: no way to tell which thread ran
                found = e[3]
        return found
