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
# (start_ns, seq, end_ns, trace_id, span_id, name): sorted by start, seq tells equal starts
# apart. A plain tuple of atoms on purpose: the cyclic GC stops tracking those, so 100,000
# indexed spans add nothing to every collection's walk (Span objects, a tuple subclass, and
# slots classes stay tracked; measured: 3x the index's CPU under 2,000 spans/s).
_Entry = tuple[int, int, int, bytes, bytes, str]


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
                entry = (sp.start_ns, self._seq, sp.end_ns, sp.trace_id, sp.span_id, sp.name)
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
            if full:
                self._remove_all([self._fifo.popleft() for _ in range(full)])
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
        fifo = self._fifo
        # Spans arrive roughly in end order (SDKs export them when they end): the front of
        # the FIFO is the oldest. A late long span may hold a few older ones back until it
        # expires; max_spans still bounds them.
        gone = []
        while fifo and fifo[0][1][2] < horizon:
            gone.append(fifo.popleft())
        if gone:
            self._remove_all(gone)
        return len(gone)

    def _remove_all(self, gone: list[tuple[_Key, _Entry]]) -> None:
        by_key: dict[_Key, list[_Entry]] = {}
        for key, entry in gone:
            by_key.setdefault(key, []).append(entry)
        for key, entries in by_key.items():
            lst = self._threads[key]
            k = len(entries)
            # The usual case: the oldest spans of a thread are the first of its list; one
            # slice deletion instead of k list shifts.
            if k <= len(lst) and {e[1] for e in lst[:k]} == {e[1] for e in entries}:
                del lst[:k]
            else:
                for entry in entries:
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
            e = self._innermost((pid, tid), t) if tid != NO_THREAD else None
            if e is None:
                tid = NO_THREAD
                e = self._only_open((pid, NO_THREAD), t)
        return None if e is None else Span(pid, tid, e[0], e[2], e[3], e[4], e[5])

    def _candidates(self, key: _Key, t: int) -> list[_Entry]:
        lst = self._threads.get(key)
        if not lst:
            return []
        hi = bisect.bisect_right(lst, (t, math.inf))  # first entry starting after t
        lo = bisect.bisect_left(lst, (t - self._longest[key],), 0, hi)
        return lst[lo:hi]

    def _innermost(self, key: _Key, t: int) -> _Entry | None:
        best: _Entry | None = None
        for e in reversed(self._candidates(key, t)):
            if e[2] < t:
                continue
            if best is not None and e[0] < best[0]:
                break  # an earlier start is an outer span
            if best is None or e[2] < best[2]:  # equal starts: the one ending first is inner
                best = e
        return best

    def _only_open(self, key: _Key, t: int) -> _Entry | None:
        found: _Entry | None = None
        for e in self._candidates(key, t):
            if e[2] >= t:
                if found is not None:
                    return None  # two open at once: no way to tell which thread ran
                found = e
        return found
