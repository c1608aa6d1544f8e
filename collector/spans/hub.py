"""The host service between traces pipelines (publishers) and correlate processors."""

from __future__ import annotations

import threading
from collections.abc import Callable

from collector.spans.batch import SpanBatch

# Key under Host.shared: the pipeline runtime and every correlate processor take a reference.
HUB_KEY = "collector.spans.hub"


class SpanHub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: tuple[Callable[[SpanBatch], None], ...] = ()

    def subscribe(self, fn: Callable[[SpanBatch], None]) -> None:
        with self._lock:
            if fn not in self._subscribers:
                self._subscribers = (*self._subscribers, fn)

    def unsubscribe(self, fn: Callable[[SpanBatch], None]) -> None:
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s != fn)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, batch: SpanBatch) -> int:
        """Hand ``batch`` to every subscriber; returns how many took it."""
        subs = self._subscribers  # one read: a concurrent (un)subscribe sees old or new
        for fn in subs:
            fn(batch)
        return len(subs)
