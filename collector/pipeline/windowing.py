"""The windowing stage: symbolized batches -> one ProfileSet per profile type and window.

A pipeline keeps one WindowStage per distinct window setting of its "profiles" exporters, so
``exporters: [folded, pprof]`` deduplicates every sample once and both exporters receive the
same ProfileSet object. Deduplication (``add``) and closing run in worker threads: 10k
samples cost ~25 ms of CPU (benchmarks/dedup.py), too long to hold the event loop.

The same stage also serves an exporter that is fed SymbolizedBatches directly, outside a
pipeline (tests, embedding): see ``BatchWindows``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from collector.model import ProfileSet, ProfileWindows, SymbolizedBatch, WindowSettings
from collector.telemetry import Counters

# Where closed windows go: the pipeline offers them to exporter queues; a standalone
# exporter exports them itself. Its results are returned by ``flush``.
Sink = Callable[[ProfileSet], Awaitable[Any]]

log = logging.getLogger("collector.pipeline")


class WindowStage:
    """Windows on a timer. Counters (under ``owner``): ``windows_closed`` (ProfileSets handed
    on), ``windows_closed_full`` (of those, closed early at max_samples), ``batches_failed``."""

    def __init__(
        self,
        owner: str,
        settings: WindowSettings,
        sink: Sink,
        counters: Counters | None = None,
    ) -> None:
        self.owner = owner
        self.settings = settings
        self._sink = sink
        self._windows = ProfileWindows(settings.max_samples)
        self.counters = counters or Counters()
        self._timer: asyncio.Task[None] | None = None
        self._closing = asyncio.Lock()
        self.closed = False

    def start(self) -> None:
        if self._timer is None and not self.closed:
            self._timer = asyncio.get_running_loop().create_task(
                self._run(), name=f"{self.owner} window timer"
            )

    def __len__(self) -> int:
        return len(self._windows)

    async def add(self, batch: SymbolizedBatch) -> list[Any]:
        """Deduplicate ``batch`` into its window; hand on any window it filled, and the
        window it ends when the receiver cut it (``window_end``)."""
        full = await asyncio.to_thread(self._windows.add, batch)
        if full:
            self.counters.add(self.owner, "windows_closed_full", len(full))
        if batch.window_end:
            async with self._closing:
                ended = await asyncio.to_thread(self._windows.close, batch.profile_type)
            if ended is not None:
                full.append(ended)
        return await self._hand_on(full)

    async def flush(self) -> list[Any]:
        """Close every open window now and hand the ProfileSets on; the sink's results."""
        async with self._closing:
            sets = await asyncio.to_thread(self._windows.close_all)
            return await self._hand_on(sets)

    async def _hand_on(self, sets: list[ProfileSet]) -> list[Any]:
        out = []
        for ps in sets:
            self.counters.add(self.owner, "windows_closed")
            out.append(await self._sink(ps))
        return out

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += self.settings.interval
            await asyncio.sleep(max(deadline - loop.time(), 0))
            try:
                # Shielded: shutdown cancels the timer, never a window half handed on.
                await asyncio.shield(self.flush())
            except asyncio.CancelledError:
                raise
            except Exception:
                self.counters.add(self.owner, "flushes_failed")
                log.exception("closing windows failed component=%s", self.owner)

    async def shutdown(self) -> list[Any]:
        """Stop the timer and hand on the last windows. Idempotent."""
        if self.closed:
            return []
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        return await self.flush()


class BatchWindows:
    """Lets an exporter that takes ProfileSets also be handed SymbolizedBatches directly.

    In a pipeline this is never used (the pipeline's WindowStage windows once for all
    exporters); an exporter built on its own, e.g. in a test or a program embedding it, gets
    the same stage, with its own window settings, started on the first batch.
    """

    def __init__(self, owner: str, settings: WindowSettings, sink: Sink) -> None:
        self._owner = owner
        self._settings = settings
        self._sink = sink
        self._stage: WindowStage | None = None
        self.counters: Counters | None = None

    async def add(self, batch: SymbolizedBatch) -> list[Any]:
        if self._stage is None:
            self._stage = WindowStage(self._owner, self._settings, self._sink, self.counters)
            self._stage.start()
        return await self._stage.add(batch)

    async def flush(self) -> list[Any]:
        return await self._stage.flush() if self._stage is not None else []

    async def shutdown(self) -> list[Any]:
        return await self._stage.shutdown() if self._stage is not None else []
