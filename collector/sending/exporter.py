"""A profile exporter for the network: ProfileSet (one window, cut by the pipeline) ->
encode in a worker thread -> bounded sending queue -> transport with retries.

Network exporters (otlp, otlp_http, later pyroscope) supply a ``Transport`` and an ``encode``
function; everything about queueing, retrying and counting lives here once. The pipeline
cuts windows by ``interval`` and ``max_batch_samples`` (a window reaching it is sent early);
fed SymbolizedBatches directly (outside a pipeline) the exporter windows them itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from collector.component import CreateSettings
from collector.host import Host
from collector.model import ProfileSet, SymbolizedBatch, WindowSettings
from collector.pipeline.windowing import BatchWindows
from collector.sending.queue import QueueItem, SendingQueue
from collector.sending.retry import PermanentError, RetryableError, send_with_retry
from collector.sending.settings import ProfilesExporterConfig


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
    dropped_samples_encode, rejected_profiles, retries."""

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
        self._queue = SendingQueue(
            config.sending_queue.queue_size,
            config.sending_queue.num_consumers,
            self._send_item,
            self.log,
        )
        self._host: Host | None = None
        self._logged: set[str] = set()
        self._started = False
        self._stopped = False

    # -- counters ---------------------------------------------------------------------------
    def _count(self, name: str, n: int = 1) -> None:
        if self._host is not None:
            self._host.counters.add(self.id, name, n)

    def _log_once(self, key: str, msg: str, *args: object) -> None:
        if key not in self._logged:
            self._logged.add(key)
            self.log.error(msg + " (logged once; further ones are only counted)", *args)

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self, host: Host) -> None:
        self._host = host
        self._batches.counters = host.counters
        await self.transport.open()
        self._queue.start()
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

    async def _send_set(self, ps: ProfileSet) -> None:
        pt = ps.profile_type
        self._count("dropped_samples_window_full", ps.dropped_samples)
        n = ps.sample_count
        try:
            # Encoding is CPU work on an immutable ProfileSet: keep it off the event loop.
            payload = await asyncio.to_thread(self._encode, ps)
        except Exception:  # a bug in an encoder: count the window, keep the exporter
            self._count("dropped_samples_encode", n)
            self.log.exception("%s: encoding failed samples=%d", self.id, n)
            return
        if not self._queue.offer(QueueItem(payload, n, pt.name)):
            self._count("dropped_requests_queue_full")
            self._count("dropped_samples_queue_full", n)
            self._log_once("queue_full", "%s: sending queue full; dropping samples=%d", self.id, n)

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
            self._log_once(
                f"perm:{type(e).__name__}:{str(e)[:60]}",
                "%s: permanent error, not retried: %s samples=%d",
                self.id,
                e,
                item.samples,
            )
            return
        except RetryableError as e:
            self._count("failed_samples_retries_exhausted", item.samples)
            self.log.warning("%s: giving up after retries: %s samples=%d", self.id, e, item.samples)
            return
        self._count("sent_requests")
        self._count("sent_samples", item.samples)
        if res.rejected or res.message:
            self._count("rejected_profiles", res.rejected)
            self.log.warning(
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
        lost = sum(i.samples for i in unsent)
        if unsent:
            self._count("dropped_samples_shutdown", lost)
            self.log.warning(
                "%s: shutdown left unsent requests=%d samples=%d", self.id, len(unsent), lost
            )
        await self.transport.close()
