"""A bounded sending queue: offering never blocks; when full the item is dropped and counted.

Bounded in requests (``size``) and, when ``max_bytes`` is set, in payload bytes too. With a
``QueueStorage`` it is persistent: every request is on disk before ``put`` returns, only its
size and sample count stay in memory, and requests left by a previous run (or a crash) are
sent first, in order. Order is kept per exporter: requests are taken oldest first (with
``num_consumers`` > 1 several are in flight at once and may complete out of order).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from collector.sending.storage import Entry, QueueStorage, StorageCorrupt


@dataclass(slots=True)
class QueueItem:
    payload: Any
    samples: int  # what a drop of this item loses, for the counters
    profile_type: str = ""


def payload_size(payload: Any) -> int:
    """Bytes a payload holds (0 for payloads that are not bytes-like: counted by number)."""
    return len(payload) if isinstance(payload, bytes | bytearray | memoryview) else 0


@dataclass(slots=True)
class _Slot:
    item: QueueItem | None  # in memory; None when the payload is on disk
    entry: Entry | None
    size: int
    samples: int


class SendingQueue:
    """``num_consumers`` workers call ``send(item)``; ``send`` handles its own retries and
    failures (it must not raise). ``size`` and ``max_bytes`` bound the items waiting, not
    the ones in flight. ``on_corrupt(samples)`` is told of a stored request that failed its
    CRC when it was read back (it is skipped)."""

    def __init__(
        self,
        size: int,
        num_consumers: int,
        send: Callable[[QueueItem], Awaitable[None]],
        logger: logging.Logger,
        *,
        max_bytes: int = 0,
        storage: QueueStorage | None = None,
        on_corrupt: Callable[[int], None] | None = None,
    ) -> None:
        self.capacity = size
        self.max_bytes = max_bytes
        self._n = num_consumers
        self._send = send
        self._log = logger
        self._storage = storage
        self._on_corrupt = on_corrupt
        self._slots: deque[_Slot] = deque()
        self._bytes = 0
        self._has_items = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight: dict[int, _Slot] = {}
        self._write = asyncio.Lock()  # one writer at a time keeps the files in offer order
        self._closed = False
        self.kept = 0  # requests left on disk at shutdown, for the next start
        self.kept_samples = 0

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def persistent(self) -> bool:
        return self._storage is not None

    def restore(self, entries: list[Entry]) -> None:
        """Queue requests found on disk at start (before anything new), whatever the bounds:
        they were accepted once and are not dropped for a smaller queue."""
        for e in entries:
            self._push(_Slot(None, e, e.size, e.samples))

    def start(self) -> None:
        for i in range(self._n):
            self._workers.append(asyncio.create_task(self._work(i), name=f"sending-queue-{i}"))

    def _fits(self, size: int) -> bool:
        if self._closed or len(self._slots) >= self.capacity:
            return False
        return not (self.max_bytes and self._slots and self._bytes + size > self.max_bytes)

    def _push(self, slot: _Slot) -> None:
        self._slots.append(slot)
        self._bytes += slot.size
        self._idle.clear()
        self._has_items.set()

    def offer(self, item: QueueItem) -> bool:
        """Enqueue ``item`` in memory; False (the caller counts the drop) when full or
        closed. A persistent queue takes items through ``put``."""
        if self._storage is not None:
            raise RuntimeError("a persistent queue takes items through put()")
        size = payload_size(item.payload)
        if not self._fits(size):
            return False
        self._push(_Slot(item, None, size, item.samples))
        return True

    async def put(self, item: QueueItem) -> bool:
        """Enqueue ``item``, on disk first when the queue is persistent (the write runs in a
        thread). False when full or closed; OSError when the write failed (disk full)."""
        if self._storage is None:
            return self.offer(item)
        if not isinstance(item.payload, bytes | bytearray | memoryview):
            raise TypeError(
                f"a persistent sending queue stores bytes; the encoder gave "
                f"{type(item.payload).__name__}"
            )
        size = len(item.payload)
        async with self._write:
            if not self._fits(size):
                return False
            storage = self._storage
            entry = await asyncio.to_thread(
                storage.put, bytes(item.payload), item.samples, item.profile_type
            )
            self._push(_Slot(None, entry, size, item.samples))
        return True

    async def _take(self) -> _Slot:
        while not self._slots:
            self._has_items.clear()
            await self._has_items.wait()
        slot = self._slots.popleft()
        self._bytes -= slot.size
        return slot

    async def _load(self, slot: _Slot) -> QueueItem | None:
        if slot.item is not None:
            return slot.item
        assert self._storage is not None and slot.entry is not None
        try:
            payload = await asyncio.to_thread(self._storage.read, slot.entry)
        except StorageCorrupt as e:
            self._log.error("sending queue: stored request failed its check, skipped: %s", e)
            if self._on_corrupt is not None:
                self._on_corrupt(slot.samples)
            return None
        return QueueItem(payload, slot.samples, slot.entry.profile_type)

    async def _work(self, i: int) -> None:
        while True:
            slot = await self._take()
            self._in_flight[i] = slot
            try:
                item = await self._load(slot)
                if item is not None:
                    await self._send(item)
                if slot.entry is not None and self._storage is not None:
                    # Sent, or failed for good (counted by send): either way it is done.
                    await asyncio.to_thread(self._storage.remove, slot.entry)
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("bug: send raised; item dropped samples=%d", slot.samples)
            finally:
                self._in_flight.pop(i, None)
                if not self._slots and not self._in_flight:
                    self._idle.set()

    async def shutdown(self, timeout: float) -> list[QueueItem]:
        """Stop taking items, let the workers drain for up to ``timeout`` seconds, then stop
        them. Returns the items that were not sent (still queued or cut off in flight); a
        persistent queue returns none of them: they stay on disk (``kept``) for the next
        start, so they are not lost."""
        self._closed = True
        if self._workers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        left = list(self._in_flight.values())
        for w in self._workers:
            w.cancel()
        for w in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await w
        self._workers.clear()
        left.extend(self._slots)
        self._slots.clear()
        self._bytes = 0
        if self._storage is not None:
            self.kept = len(left)
            self.kept_samples = sum(s.samples for s in left)
            self._storage.close()
            return []
        return [s.item for s in left if s.item is not None]
