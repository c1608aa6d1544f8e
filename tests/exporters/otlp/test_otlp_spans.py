"""The otlp exporter in a traces pipeline: spans go to TraceService/Export byte for byte,
with the shared retry policy; profiles keep flowing beside them."""

from __future__ import annotations

import asyncio
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.spans import decode_traces
from exporters.otlp import factory
from tests.support.otlp_fixtures import build, make_batches
from tests.support.otlp_run import Host, create, fast_retry
from tests.support.otlp_servers import free_port
from tests.support.otlp_traces import Backend


def request(n: int) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.int_value = "process.pid", 7
    ss = rs.scope_spans.add()
    for i in range(n):
        sp = ss.spans.add()
        sp.trace_id, sp.span_id, sp.name = bytes([i + 1]) * 16, bytes([i + 1]) * 8, f"s{i}"
        sp.start_time_unix_nano, sp.end_time_unix_nano = time.time_ns(), time.time_ns() + 5
    return req.SerializeToString()


def test_spans_are_forwarded_unchanged_beside_profiles() -> None:
    with Backend() as backend:

        async def main() -> Host:
            exp = create(
                factory,
                {
                    "endpoint": f"127.0.0.1:{backend.port}",
                    "tls": {"insecure": True},
                    "retry_on_failure": fast_retry(),
                },
            )
            host = Host()
            await exp.start(host)
            bodies = [request(3), request(2)]
            for b in bodies:
                await exp.export(decode_traces(b))
            await exp.export(build(make_batches(200)))
            await exp.shutdown()
            assert backend.traces.requests == bodies
            return host

        host = asyncio.run(main())
    c = host.counters.snapshot()["otlp"]
    assert c["sent_spans"] == 5 and c["sent_span_requests"] == 2
    assert c["sent_samples"] == 200 and backend.profiles.samples == 200


def test_spans_to_a_dead_backend_are_counted() -> None:
    async def main() -> Host:
        retry = fast_retry(max_elapsed_time="200ms")
        exp = create(
            factory,
            {
                "endpoint": f"127.0.0.1:{free_port()}",
                "tls": {"insecure": True},
                "retry_on_failure": retry,
                "timeout": "1s",
            },
        )
        host = Host()
        await exp.start(host)
        await exp.export(decode_traces(request(4)))
        await exp.shutdown()
        return host

    c = asyncio.run(main()).counters.snapshot()["otlp"]
    assert c.get("failed_spans_retries_exhausted", 0) + c.get("dropped_spans_shutdown", 0) == 4
    assert "sent_spans" not in c
