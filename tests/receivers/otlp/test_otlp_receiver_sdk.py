"""The real OpenTelemetry SDK, as an application would use it, sends spans to the receiver.

There is no traces pipeline yet, so the receiver refuses them (gRPC UNIMPLEMENTED, HTTP 404):
the SDK must see the failure instead of a false "delivered", the instrumented code must keep
running, and the receiver must keep serving profiles.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from collector.host import Host
from tests.receivers.otlp.test_otlp_receiver import (
    PROFILES,
    grpc_call,
    http_post,
    receiver,
    valid_request,
)
from tests.support.otlp_servers import ListConsumer


class Watching(SpanExporter):
    """Passes spans to the SDK's real exporter and keeps what it answered."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.results: list[SpanExportResult] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        self.results.append(result)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


def workload(exporter: SpanExporter, n: int, done: list[int]) -> None:
    """Instrumented code: n iterations of a parent and a child span, each exported at its end."""
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-client"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for i in range(n):
        with tracer.start_as_current_span(f"parent-{i}"), tracer.start_as_current_span("child"):
            pass
        done.append(i)
    provider.shutdown()


def test_sdk_sees_the_refusal_and_keeps_running() -> None:
    async def main() -> tuple[Host, dict[str, Watching], dict[str, list[int]], ListConsumer]:
        consumer = ListConsumer()
        rcv = receiver(consumer)
        host = Host()
        await rcv.start(host)
        exporters = {
            "grpc": Watching(
                GrpcSpans(endpoint=f"127.0.0.1:{rcv.grpc_port}", insecure=True, timeout=10)
            ),
            "http": Watching(
                HttpSpans(endpoint=f"http://127.0.0.1:{rcv.http_port}/v1/traces", timeout=10)
            ),
        }
        done: dict[str, list[int]] = {"grpc": [], "http": []}
        errors: list[BaseException] = []
        for name, n in (("grpc", 5), ("http", 4)):
            # The SDK exporters block: run them beside the loop that serves the receiver.
            def run(name: str = name, n: int = n) -> None:
                try:
                    workload(exporters[name], n, done[name])
                except BaseException as e:  # the test fails below with it
                    errors.append(e)

            t = threading.Thread(target=run)
            t.start()
            await asyncio.to_thread(t.join)
        assert not errors, errors
        # The receiver still takes profiles, over both protocols.
        body = valid_request(30).SerializeToString()
        code, _ = await grpc_call(rcv.grpc_port, PROFILES, body)
        assert code == grpc.StatusCode.OK
        status, _ = await http_post(rcv.http_port, "/v1development/profiles", body)
        assert status == 200
        await rcv.shutdown()
        return host, exporters, done, consumer

    host, exporters, done, consumer = asyncio.run(main())
    assert done == {"grpc": list(range(5)), "http": list(range(4))}  # the workload ran on
    # One export per ended span (SimpleSpanProcessor), two spans per iteration; each failed.
    assert exporters["grpc"].results == [SpanExportResult.FAILURE] * 10
    assert exporters["http"].results == [SpanExportResult.FAILURE] * 8
    assert host.counters.get("otlp", "traces_refused") == 18
    assert sum(len(b.samples) for b in consumer.batches) == 60
