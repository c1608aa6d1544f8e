"""Forwarding spans unchanged over gRPC TraceService/Export, for an otlp exporter listed in a
traces pipeline. The request bytes the receiver got are sent as they are, through an
in-memory SendingQueue of their own (same size settings as the profiles queue) with the same
retry policy, so a slow trace backend never delays profiles and the reverse."""

from __future__ import annotations

import logging

import grpc
import grpc.aio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from collector import logs
from collector.host import Host
from collector.sending import PermanentError, RetryableError
from collector.sending.queue import QueueItem, SendingQueue
from collector.sending.retry import send_with_retry
from collector.spans import SpanBatch
from exporters.otlp.config import OtlpExporterConfig
from exporters.otlp.transport import RETRYABLE

TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class SpanForwarder:
    """Counters: sent_spans, sent_span_requests, dropped_spans_queue_full,
    failed_spans_permanent, failed_spans_retries_exhausted, dropped_spans_shutdown."""

    def __init__(self, cid: str, config: OtlpExporterConfig, log: logging.Logger) -> None:
        self.id = cid
        self.config = config
        self.log = log
        sq = config.sending_queue
        self._queue = SendingQueue(
            sq.queue_size, sq.num_consumers, self._send, log, max_bytes=sq.max_bytes
        )
        self._call: grpc.aio.UnaryUnaryMultiCallable | None = None
        self._host: Host | None = None
        self._fail = logs.Throttle(log)
        self._metadata = tuple(config.header_items())

    def _count(self, name: str, n: int = 1) -> None:
        if self._host is not None and n:
            self._host.counters.add(self.id, name, n)

    def start(self, host: Host, channel: grpc.aio.Channel) -> None:
        self._host = host
        self._call = channel.unary_unary(
            TRACE_EXPORT,
            request_serializer=None,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )
        self._queue.start()

    async def export(self, batch: SpanBatch) -> None:
        if self._call is None:
            self._count("dropped_spans_shutdown", batch.span_count)
            return
        if not await self._queue.put(QueueItem(batch.payload, batch.span_count, "spans")):
            self._count("dropped_spans_queue_full", batch.span_count)
            self._fail(logging.ERROR, "%s: span queue full; dropping spans", self.id)

    async def _once(self, payload: bytes) -> None:
        assert self._call is not None
        try:
            await self._call(payload, timeout=self.config.timeout, metadata=self._metadata)
        except grpc.aio.AioRpcError as e:
            msg = f"grpc status={e.code().name} detail={e.details()!r}"
            if e.code() not in RETRYABLE:
                raise PermanentError(msg) from None
            raise RetryableError(msg) from None

    async def _send(self, item: QueueItem) -> None:
        try:
            await send_with_retry(
                lambda: self._once(item.payload),
                self.config.retry_on_failure,
                on_retry=lambda e, d: self._count("retries"),
            )
        except PermanentError as e:
            self._count("failed_spans_permanent", item.samples)
            self._fail(logging.ERROR, "%s: spans refused, not retried: %s", self.id, e)
            return
        except RetryableError as e:
            self._count("failed_spans_retries_exhausted", item.samples)
            self._fail(logging.WARNING, "%s: giving up on spans after retries: %s", self.id, e)
            return
        self._count("sent_span_requests")
        self._count("sent_spans", item.samples)

    async def shutdown(self) -> None:
        unsent = await self._queue.shutdown(self.config.shutdown_timeout)
        self._count("dropped_spans_shutdown", sum(i.samples for i in unsent))
        self._call = None
        self._fail.flush(final=True)
