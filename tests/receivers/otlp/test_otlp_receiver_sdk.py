"""The real OpenTelemetry SDK, as an application would use it, sends spans to the receiver."""

from __future__ import annotations

import asyncio
import threading

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from collector.host import Host
from tests.receivers.otlp.test_otlp_receiver import receiver
from tests.support.otlp_servers import ListConsumer


def emit_spans(exporter: object, n: int) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-client"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[arg-type]
    tracer = provider.get_tracer("test")
    for i in range(n):
        with tracer.start_as_current_span(f"parent-{i}"), tracer.start_as_current_span("child"):
            pass
    provider.shutdown()


def test_sdk_spans_over_grpc_and_http_are_counted() -> None:
    async def main() -> Host:
        rcv = receiver(ListConsumer())
        host = Host()
        await rcv.start(host)
        grpc_exp = GrpcSpans(endpoint=f"127.0.0.1:{rcv.grpc_port}", insecure=True, timeout=10)
        http_exp = HttpSpans(endpoint=f"http://127.0.0.1:{rcv.http_port}/v1/traces", timeout=10)
        # The SDK exporters block: run them beside the loop that serves the receiver.
        for exp, n in ((grpc_exp, 5), (http_exp, 4)):
            t = threading.Thread(target=emit_spans, args=(exp, n))
            t.start()
            await asyncio.to_thread(t.join)
        await rcv.shutdown()
        return host

    host = asyncio.run(main())
    # Two spans per iteration (parent and child): 5 over gRPC and 4 over HTTP.
    assert host.counters.get("otlp", "received_spans") == 2 * (5 + 4)
