"""A bounded sending queue: offering never blocks; when full the item is dropped and counted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class QueueItem:
    payload: Any
    samples: int  # what a drop of this item loses, for the counters
    profile_type: str = ""


class SendingQueue:
    """``num_consumers`` workers call ``send(item)``; ``send`` handles its own retries and
    failures (it must not raise). ``size`` bounds the items waiting, not the ones in flight."""

    def __init__(
        self,
        size: int,
        num_consumers: int,
        send: Callable[[QueueItem], Awaitable[None]],
        logger: logging.Logger,
    ) -> None:
        self._q: asyncio.Queue[QueueItem] = asyncio.Queue(maxsize=size)
        self._n = num_consumers
        self._send = send
        self._log = logger
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight: dict[int, QueueItem] = {}
        self._closed = False

    def __len__(self) -> int:
        return self._q.qsize()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def start(self) -> None:
        for i in range(self._n):
            self._workers.append(asyncio.create_task(self._work(i), name=f"sending-queue-{i}"))

    def offer(self, item: QueueItem) -> bool:
        """Enqueue ``item``; False (the caller counts the drop) when full or closed."""
        if self._closed:
            return False
        try:
            self._q.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    async def _work(self, i: int) -> None:
        while True:
            item = await self._q.get()
            self._in_flight[i] = item
            try:
                await self._send(item)
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("bug: send raised; item dropped samples=%d", item.samples)
            finally:
                self._in_flight.pop(i, None)
                self._q.task_done()

    async def shutdown(self, timeout: float) -> list[QueueItem]:
        """Stop taking items, let the workers drain for up to ``timeout`` seconds, then stop
        them. Returns the items that were not sent (still queued or cut off in flight)."""
        self._closed = True
        if self._workers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._q.join(), timeout)
        unsent = list(self._in_flight.values())
        for w in self._workers:
            w.cancel()
        for w in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await w
        self._workers.clear()
        while not self._q.empty():
            unsent.append(self._q.get_nowait())
        return unsent
