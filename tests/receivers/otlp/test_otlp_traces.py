"""The otlp receiver with a traces pipeline behind it (the runtime's real FanOut and bounded
queues): spans over gRPC and HTTP (protobuf and JSON) become SpanBatches with the request's
bytes; a full traces queue answers UNAVAILABLE / 503; garbage INVALID_ARGUMENT / 400."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.host import Host
from collector.pipeline.queues import BoundedQueue, FanOut
from collector.spans import SpanBatch
from receivers.otlp import factory
from tests.exporters.otlp.test_otlp_spans import request
from tests.receivers.otlp.test_otlp_receiver import grpc_call, http_post
from tests.support.otlp_run import create

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


async def started(size: int = 8) -> tuple[object, BoundedQueue, Host]:
    host = Host()
    traces = BoundedQueue("pipelines/traces", size, host.counters)
    feed = FanOut(asyncio.get_running_loop(), [], host.counters, "receivers/otlp", [traces])
    cfg = {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}
    rcv = create(factory, cfg, feed)
    await rcv.start(host)
    return rcv, traces, host


def taken(q: BoundedQueue) -> list[SpanBatch]:
    out = []
    while not q.queue.empty():
        out.append(q.queue.get_nowait())
    return out


def test_spans_over_grpc_and_http() -> None:
    async def main() -> None:
        rcv, q, host = await started()
        body = request(3)
        code, _ = await grpc_call(rcv.grpc_port, TRACES, body)
        assert code == grpc.StatusCode.OK
        status, _ = await http_post(rcv.http_port, "/v1/traces", request(2))
        assert status == 200
        js = json_format.MessageToJson(ExportTraceServiceRequest.FromString(request(1)))
        status, reply = await http_post(
            rcv.http_port, "/v1/traces", js.encode(), "application/json"
        )
        assert status == 200 and reply.startswith(b"{")
        got = taken(q)
        assert [b.span_count for b in got] == [3, 2, 1]
        assert got[0].payload == body and got[0].spans[0].pid == 7
        c = host.counters.snapshot()["otlp"]
        assert c["received_spans"] == 6 and "traces_refused" not in c
        await rcv.shutdown()

    asyncio.run(main())


def test_full_traces_queue_and_garbage() -> None:
    async def main() -> None:
        rcv, _q, host = await started(size=1)
        assert (await grpc_call(rcv.grpc_port, TRACES, request(1)))[0] == grpc.StatusCode.OK
        code, _ = await grpc_call(rcv.grpc_port, TRACES, request(2))
        assert code == grpc.StatusCode.UNAVAILABLE  # the sender keeps its spans and retries
        status, _ = await http_post(rcv.http_port, "/v1/traces", request(2))
        assert status == 503
        code, _ = await grpc_call(rcv.grpc_port, TRACES, b"\xff\xff\xff")
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        c = host.counters.snapshot()
        assert c["otlp"]["refused_spans_pipeline_full"] == 4
        assert c["pipelines/traces"]["spans_dropped"] == 4
        assert c["otlp"]["refused_requests_invalid"] == 1
        await rcv.shutdown()

    asyncio.run(main())
