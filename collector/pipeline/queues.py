"""Bounded queues between stages: a full queue drops the newest batch and counts it."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from collector.spans import SpanBatch
from collector.telemetry import Counters

log = logging.getLogger("collector.pipeline")


def batch_len(batch: Any) -> int:
    """Samples in a batch or a ProfileSet (what a drop of it loses, for the counters)."""
    count = getattr(batch, "sample_count", None)
    if isinstance(count, int):
        return count
    samples = getattr(batch, "samples", None)
    return len(samples) if samples is not None else 0


class BoundedQueue:
    """An asyncio queue that never blocks its producer."""

    def __init__(self, owner: str, size: int, counters: Counters) -> None:
        self.owner = owner
        self.queue: asyncio.Queue[Any] = asyncio.Queue(size)
        self.counters = counters
        self._warned = False

    def offer(self, batch: Any) -> bool:
        try:
            self.queue.put_nowait(batch)
            return True
        except asyncio.QueueFull:
            self.counters.add(self.owner, "batches_dropped")
            what = "spans_dropped" if isinstance(batch, SpanBatch) else "samples_dropped"
            self.counters.add(self.owner, what, batch_len(batch))
            if not self._warned:
                self._warned = True
                log.warning(
                    "queue full, dropping newest batches component=%s size=%d "
                    "(counted in samples_dropped; raise service.queue_size or slow receivers)",
                    self.owner,
                    self.queue.maxsize,
                )
            return False

    def discard_remaining(self) -> int:
        """At shutdown: count whatever could not be processed in time."""
        n = 0
        while not self.queue.empty():
            batch = self.queue.get_nowait()
            self.queue.task_done()
            n += batch_len(batch)
        if n:
            self.counters.add(self.owner, "samples_dropped_at_shutdown", n)
        return n


class FanOut:
    """The Consumer handed to a receiver: offers each batch to every pipeline it feeds.

    Callable from any thread: off the loop thread the offer is scheduled on the loop.
    With ``counters`` it counts, under ``owner`` (``receivers/<id>``), ``accepted_samples``
    (every pipeline took the batch) and ``refused_samples`` (at least one was full).
    ``retarget`` points a running receiver at rebuilt pipelines (a config reload).
    Batches of spans (``SpanBatch``) go to ``span_targets``, the traces pipelines' queues;
    ``takes("traces")`` says whether there are any (the otlp receiver refuses spans if not).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        targets: list[BoundedQueue],
        counters: Counters | None = None,
        owner: str = "",
        span_targets: list[BoundedQueue] | None = None,
    ) -> None:
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._routes = (list(targets), list(span_targets or ()))
        self._counters = counters
        self._owner = owner

    def retarget(
        self, targets: list[BoundedQueue], span_targets: list[BoundedQueue] | None = None
    ) -> None:
        # One assignment: an offer sees the old or the new lists, never a mix.
        self._routes = (list(targets), list(span_targets or ()))

    def takes(self, signal: str) -> bool:
        return bool(self._routes[1 if signal == "traces" else 0])

    def consume(self, batch: Any) -> bool:
        if threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._offer, batch)
            return True
        return self._offer(batch)

    def _offer(self, batch: Any) -> bool:
        spans = isinstance(batch, SpanBatch)
        ok = True
        for q in self._routes[1 if spans else 0]:
            ok = q.offer(batch) and ok
        if self._counters is not None:
            what = "spans" if spans else "samples"
            name = f"accepted_{what}" if ok else f"refused_{what}"
            self._counters.add(self._owner, name, batch_len(batch))
        return ok
