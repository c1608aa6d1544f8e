"""Holds each batch up to max_delay, then links its samples to spans and hands it on.

Spans reach the processor through the host's SpanHub (a traces pipeline publishes them);
they go into a SpanIndex shared by every correlate processor with the same index settings.
``process`` never waits: it queues the batch and returns None; a timer task releases batches
in arrival order when their time is up, through the pipeline's ``emit`` callback. Linking
runs in a worker thread (one bisect per sample). Shutdown releases everything held.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from typing import Any

from collector.component import CreateSettings, Emit
from collector.host import Host
from collector.model import SymbolizedBatch
from collector.spans import HUB_KEY, SpanBatch, SpanHub, SpanIndex
from processors.correlate.config import CorrelateConfig


class CorrelateProcessor:
    """Counters: samples_linked, samples_unlinked, samples_held_over_limit (passed on at once
    because max_held_samples was reached), the index's spans_* counters; gauges spans_indexed,
    samples_held."""

    def __init__(self, settings: CreateSettings, config: CorrelateConfig) -> None:
        self.id = settings.id
        self.log = settings.logger
        self.config = config
        self._emit: Emit | None = settings.emit
        self._held: deque[tuple[float, SymbolizedBatch]] = deque()
        self._held_samples = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._host: Host | None = None
        self._hub: SpanHub | None = None
        self._index: SpanIndex | None = None
        self._index_key: tuple[Any, ...] = ()
        self._stopped = False

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self, host: Host) -> None:
        self._host = host
        cfg = self.config
        self._index_key = ("correlate.index", cfg.max_spans, cfg.span_retention)

        def make() -> SpanIndex:
            def count(name: str, n: int) -> None:
                host.counters.add(self.id, name, n)

            return SpanIndex(cfg.max_spans, int(cfg.span_retention * 1e9), count)

        self._index = host.shared(self._index_key, make)
        self._hub = host.shared(HUB_KEY, SpanHub)
        self._hub.subscribe(self._index.add_batch)
        host.counters.gauge(self.id, "spans_indexed", self._index.__len__)
        host.counters.gauge(self.id, "samples_held", self._held_gauge)
        self._task = asyncio.get_running_loop().create_task(self._release_loop())

    async def shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._held:  # handed downstream, as every buffering component does
            await self._release(self._held.popleft()[1])
        host = self._host
        if host is None:
            return
        assert self._index is not None and self._hub is not None
        self._hub.unsubscribe(self._index.add_batch)
        host.counters.drop_gauge(self.id, "spans_indexed", self._index.__len__)
        host.counters.drop_gauge(self.id, "samples_held", self._held_gauge)
        host.release(HUB_KEY)
        host.release(self._index_key)

    def _held_gauge(self) -> float:
        return self._held_samples

    # -- batches ----------------------------------------------------------------------------
    async def process(self, batch: Any) -> Any | None:
        if isinstance(batch, SpanBatch) or self._emit is None or self._stopped:
            # Outside a pipeline (no emit) there is no "later": link now with what is known.
            return await asyncio.to_thread(self.link, batch)
        n = len(batch.samples)
        if self._held_samples + n > self.config.max_held_samples:
            self._count("samples_held_over_limit", n)
            return await asyncio.to_thread(self.link, batch)
        self._held.append((time.monotonic() + self.config.max_delay, batch))
        self._held_samples += n
        self._wake.set()
        return None

    async def _release_loop(self) -> None:
        while True:
            if not self._held:
                self._wake.clear()
                await self._wake.wait()
                continue
            due = self._held[0][0] - time.monotonic()
            if due > 0:
                await asyncio.sleep(due)
                continue
            await self._release(self._held.popleft()[1])

    async def _release(self, batch: SymbolizedBatch) -> None:
        self._held_samples -= len(batch.samples)
        out = await asyncio.to_thread(self.link, batch)
        assert self._emit is not None
        await self._emit(out)

    def link(self, batch: SymbolizedBatch) -> SymbolizedBatch:
        """A copy of ``batch`` whose samples carry the span running on their thread."""
        index = self._index
        if index is None:
            return batch
        index.expire()
        lookup = index.lookup
        linked = 0
        out = []
        for s in batch.samples:
            if not s.trace_id:
                span = lookup(s.process.pid, s.tid, s.time_ns)
                if span is not None:
                    # A new Sample: the batch may be shared with another pipeline.
                    s = dataclasses.replace(
                        s, trace_id=span.trace_id, span_id=span.span_id, span_name=span.name
                    )
                    linked += 1
            out.append(s)
        self._count("samples_linked", linked)
        self._count("samples_unlinked", len(out) - linked)
        return dataclasses.replace(batch, samples=out)

    def _count(self, name: str, n: int) -> None:
        if self._host is not None and n:
            self._host.counters.add(self.id, name, n)
