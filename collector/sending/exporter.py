"""A profile exporter for the network: ProfileSet (one window, cut by the pipeline) ->
encode in a worker thread -> bounded sending queue -> transport with retries.

Network exporters (otlp, otlp_http, later pyroscope) supply a ``Transport`` and an ``encode``
function; everything about queueing, retrying and counting lives here once. The pipeline
cuts windows by ``interval`` and ``max_batch_samples`` (a window reaching it is sent early);
fed SymbolizedBatches directly (outside a pipeline) the exporter windows them itself.

With ``sending_queue.storage`` the queue is on disk (collector/sending/storage.py): requests
survive a restart or a crash and are sent at least once; left at shutdown they are kept, not
dropped. Failure lines are written every time and rate limited per class by collector.logs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from collector import logs
from collector.component import CreateSettings
from collector.host import Host
from collector.model import ProfileSet, SymbolizedBatch, WindowSettings
from collector.pipeline.windowing import BatchWindows
from collector.sending.queue import QueueItem, SendingQueue
from collector.sending.retry import PermanentError, RetryableError, send_with_retry
from collector.sending.settings import ProfilesExporterConfig
from collector.sending.storage import QueueStorage


@dataclass(slots=True)
class SendResult:
    """What the server answered to an accepted request (partial success)."""

    rejected: int = 0
    message: str = ""


def window_settings(config: ProfilesExporterConfig) -> WindowSettings:
    """How the pipeline cuts this exporter's windows (a Factory's ``window``)."""
    return WindowSettings(config.interval, config.max_batch_samples)


class Transport(Protocol):
    async def open(self) -> None: ...

    async def send(self, payload: Any) -> SendResult:
        """Send one request; raise RetryableError or PermanentError on failure."""
        ...

    async def close(self) -> None: ...


class BatchingProfileExporter:
    """Counters (host.counters under this component's id): sent_requests, sent_samples,
    dropped_samples_queue_full, dropped_requests_queue_full, failed_samples_permanent,
    failed_samples_retries_exhausted, dropped_samples_shutdown, dropped_samples_window_full,
    dropped_samples_encode, rejected_profiles, retries; with storage also restored_requests,
    restored_samples, storage_corrupt_requests, storage_corrupt_samples,
    storage_incomplete_writes, dropped_requests_storage_error, dropped_samples_storage_error,
    kept_requests_shutdown, kept_samples_shutdown. Gauges: queue_size, queue_capacity,
    queue_bytes, queue_capacity_bytes."""

    GAUGES = ("queue_size", "queue_capacity", "queue_bytes", "queue_capacity_bytes")

    def __init__(
        self,
        settings: CreateSettings,
        config: ProfilesExporterConfig,
        transport: Transport,
        encode: Callable[[ProfileSet], Any],
    ) -> None:
        self.id = settings.id
        self.log = settings.logger
        self.config = config
        self.transport = transport
        self._encode = encode
        self._batches = BatchWindows(self.id, window_settings(config), self._send_set)
        sq = config.sending_queue
        self._storage = (
            QueueStorage(sq.storage.directory, self.id) if sq.storage is not None else None
        )
        self._queue = SendingQueue(
            sq.queue_size,
            sq.num_consumers,
            self._send_item,
            self.log,
            max_bytes=sq.max_bytes,
            storage=self._storage,
            on_corrupt=self._stored_corrupt,
        )
        self._host: Host | None = None
        self._gauge_reads: dict[str, Callable[[], float]] = {}
        # A flapping backend fails every request: one line per failure class per minute.
        self._fail = logs.Throttle(self.log)
        self._started = False
        self._stopped = False

    # -- counters ---------------------------------------------------------------------------
    def _count(self, name: str, n: int = 1) -> None:
        if self._host is not None:
            self._host.counters.add(self.id, name, n)

    def _stored_corrupt(self, samples: int) -> None:
        self._count("storage_corrupt_requests")
        self._count("storage_corrupt_samples", samples)

    def _gauges(self, on: bool) -> None:
        if self._host is None:
            return
        q = self._queue
        if on:
            reads = (lambda: len(q), lambda: q.capacity, lambda: q.bytes, lambda: q.max_bytes)
            self._gauge_reads = dict(zip(self.GAUGES, reads, strict=True))
            for name, read in self._gauge_reads.items():
                self._host.counters.gauge(self.id, name, read)
        else:
            for name, read in self._gauge_reads.items():
                self._host.counters.drop_gauge(self.id, name, read)

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self, host: Host) -> None:
        self._host = host
        self._batches.counters = host.counters
        if self._storage is not None:
            report = await asyncio.to_thread(self._storage.open)
            self._count("storage_corrupt_requests", report.corrupt)
            self._count("storage_incomplete_writes", report.incomplete)
            self._count("restored_requests", len(report.entries))
            self._count("restored_samples", sum(e.samples for e in report.entries))
            self._queue.restore(report.entries)
            self.log.info(
                "%s: persistent queue directory=%s restored_requests=%d corrupt=%d "
                "incomplete_writes=%d",
                self.id,
                self._storage.dir,
                len(report.entries),
                report.corrupt,
                report.incomplete,
            )
        try:
            await self.transport.open()
        except BaseException:
            if self._storage is not None:
                self._storage.close()
            raise
        self._queue.start()
        self._gauges(True)
        self._started = True

    async def export(self, item: ProfileSet | SymbolizedBatch) -> None:
        if self._stopped:
            n = item.sample_count if isinstance(item, ProfileSet) else len(item.samples)
            self._count("dropped_samples_shutdown", n)
            return
        if isinstance(item, ProfileSet):
            await self._send_set(item)
        else:
            await self._batches.add(item)

    async def flush(self) -> None:
        """Send the windows of batches handed to ``export`` directly."""
        await self._batches.flush()

    def encode_requests(self, ps: ProfileSet) -> list[tuple[Any, int]]:
        """One window's requests as (payload, samples); runs in a worker thread. The default
        is one request per window; a backend that takes a window as several requests
        (pyroscope: one series per service, split at its size limits) overrides this."""
        return [(self._encode(ps), ps.sample_count)]

    async def _send_set(self, ps: ProfileSet) -> None:
        self._count("dropped_samples_window_full", ps.dropped_samples)
        n = ps.sample_count
        try:
            # Encoding is CPU work on an immutable ProfileSet: keep it off the event loop.
            requests = await asyncio.to_thread(self.encode_requests, ps)
        except Exception:  # a bug in an encoder: count the window, keep the exporter
            self._count("dropped_samples_encode", n)
            self.log.exception("%s: encoding failed samples=%d", self.id, n)
            return
        for payload, samples in requests:
            await self._enqueue(payload, samples, ps.profile_type.name)

    async def _enqueue(self, payload: Any, n: int, type_name: str) -> None:
        try:
            queued = await self._queue.put(QueueItem(payload, n, type_name))
        except OSError as e:  # the persistent queue could not write (disk full, ...)
            self._count("dropped_requests_storage_error")
            self._count("dropped_samples_storage_error", n)
            self._fail(
                logging.ERROR, "%s: cannot store request: %s; dropping samples=%d", self.id, e, n
            )
            return
        except TypeError as e:  # an encoder whose payload a persistent queue cannot store
            self._count("dropped_samples_encode", n)
            self._fail(logging.ERROR, "%s: %s; dropping samples=%d", self.id, e, n)
            return
        if not queued:
            self._count("dropped_requests_queue_full")
            self._count("dropped_samples_queue_full", n)
            self._fail(
                logging.ERROR,
                "%s: sending queue full (requests=%d bytes=%d); dropping samples=%d",
                self.id,
                len(self._queue),
                self._queue.bytes,
                n,
            )

    async def _send_item(self, item: QueueItem) -> None:
        def on_retry(e: RetryableError, delay: float) -> None:
            self._count("retries")
            self.log.debug("%s: retrying in %.2fs: %s", self.id, delay, e)

        try:
            res = await send_with_retry(
                lambda: self.transport.send(item.payload),
                self.config.retry_on_failure,
                on_retry=on_retry,
            )
        except PermanentError as e:
            self._count("failed_requests_permanent")
            self._count("failed_samples_permanent", item.samples)
            self._fail(
                logging.ERROR,
                "%s: permanent error, not retried: %s samples=%d",
                self.id,
                e,
                item.samples,
            )
            return
        except RetryableError as e:
            self._count("failed_samples_retries_exhausted", item.samples)
            self._fail(
                logging.WARNING,
                "%s: giving up after retries: %s samples=%d",
                self.id,
                e,
                item.samples,
            )
            return
        self._count("sent_requests")
        self._count("sent_samples", item.samples)
        if res.rejected or res.message:
            self._count("rejected_profiles", res.rejected)
            self._fail(
                logging.WARNING,
                "%s: partial success rejected_profiles=%d message=%r",
                self.id,
                res.rejected,
                res.message,
            )

    async def shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if not self._started:
            return
        await self._batches.shutdown()
        unsent = await self._queue.shutdown(self.config.shutdown_timeout)
        self._gauges(False)
        lost = sum(i.samples for i in unsent)
        if self._queue.kept:
            self._count("kept_requests_shutdown", self._queue.kept)
            self._count("kept_samples_shutdown", self._queue.kept_samples)
            self.log.info(
                "%s: left requests=%d samples=%d in the persistent queue for the next start",
                self.id,
                self._queue.kept,
                self._queue.kept_samples,
            )
        if unsent:
            self._count("dropped_samples_shutdown", lost)
            self.log.warning(
                "%s: shutdown left unsent requests=%d samples=%d", self.id, len(unsent), lost
            )
        self._fail.flush(final=True)
        await self.transport.close()
