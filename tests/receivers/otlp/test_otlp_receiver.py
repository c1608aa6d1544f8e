"""The otlp receiver with real gRPC and HTTP clients on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import grpc
import grpc.aio
import pytest
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
    ExportProfilesServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.errors import ConfigError
from collector.host import Host
from collector.otlp import encode_profile_set
from collector.sending.rpc_status import Status
from exporters.otlp import factory as otlp_exporter
from exporters.otlp_http import factory as otlp_http_exporter
from receivers.otlp import factory
from receivers.otlp.config import OtlpReceiverConfig
from tests.support.otlp_fixtures import batch_shares, build, make_batches
from tests.support.otlp_run import create, fast_retry
from tests.support.otlp_servers import ListConsumer

PROFILES = "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def receiver(consumer: ListConsumer, **over: object):
    cfg = {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}
    cfg.update(over)
    return create(factory, cfg, consumer)


async def grpc_call(port: int, method: str, body: bytes) -> tuple[grpc.StatusCode, bytes]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            return grpc.StatusCode.OK, await call(body, timeout=10)
        except grpc.aio.AioRpcError as e:
            return e.code(), (e.details() or "").encode()


async def http_post(
    port: int, path: str, body: bytes, ctype: str = "application/x-protobuf", **headers: str
) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s:
        h = {"Content-Type": ctype, **headers}
        async with s.post(f"http://127.0.0.1:{port}{path}", data=body, headers=h) as r:
            return r.status, await r.read()


def valid_request(n: int = 200) -> ExportProfilesServiceRequest:
    return encode_profile_set(build(make_batches(n)))


def test_defaults_are_loopback() -> None:
    c = OtlpReceiverConfig()
    assert c.grpc is not None and c.grpc.endpoint == "127.0.0.1:4317"
    assert c.http is not None and c.http.endpoint == "127.0.0.1:4318"


@pytest.mark.parametrize("exporter", [otlp_exporter, otlp_http_exporter])
def test_exporter_to_receiver_keeps_shares(exporter) -> None:
    async def main() -> None:
        consumer = ListConsumer()
        rcv = receiver(consumer)
        host = Host()
        await rcv.start(host)
        if exporter is otlp_exporter:
            ep = {"endpoint": f"127.0.0.1:{rcv.grpc_port}", "tls": {"insecure": True}}
        else:
            ep = {"endpoint": f"http://127.0.0.1:{rcv.http_port}"}
        exp = create(exporter, {**ep, "interval": "1h", "retry_on_failure": fast_retry()})
        await exp.start(host)
        batches = make_batches(3000)
        for b in batches:
            await exp.export(b)
        await exp.shutdown()
        await rcv.shutdown()
        assert host.counters.get(exporter.type, "sent_samples") == 3000
        assert host.counters.get("otlp", "received_samples") == 3000
        got = consumer.batches
        assert sum(len(b.samples) for b in got) == 3000
        assert {b.profile_type.name for b in got} == {"cpu"}
        assert batch_shares(got) == pytest.approx(batch_shares(batches))

        # Per-sample identity survives: same (pid, tid, cpu, time, value, span) multiset.
        def key(s):
            return (
                s.process.pid,
                s.process.executable_path,
                s.tid,
                s.cpu,
                s.time_ns,
                s.value,
                s.trace_id,
                s.stack.frames[0].label(),
            )

        want = sorted(key(s) for b in batches for s in b.samples)
        assert sorted(key(s) for b in got for s in b.samples) == want

    asyncio.run(main())


def test_sample_without_timestamps_gets_profile_time() -> None:
    async def main() -> None:
        consumer = ListConsumer()
        rcv = receiver(consumer)
        await rcv.start(Host())
        req = valid_request(50)
        prof = req.resource_profiles[0].scope_profiles[0].profiles[0]
        for s in prof.samples:
            del s.timestamps_unix_nano[:]
        code, _ = await grpc_call(rcv.grpc_port, PROFILES, req.SerializeToString())
        await rcv.shutdown()
        assert code == grpc.StatusCode.OK
        pid = req.resource_profiles[0].resource.attributes[0].value.int_value
        times = {s.time_ns for b in consumer.batches for s in b.samples if s.process.pid == pid}
        assert times == {prof.time_unix_nano}

    asyncio.run(main())


def test_traces_are_refused_and_counted() -> None:
    """No traces pipeline yet: answering OK would claim delivery of spans thrown away."""

    async def main() -> Host:
        consumer = ListConsumer()
        rcv = receiver(consumer)
        host = Host()
        await rcv.start(host)
        req = ExportTraceServiceRequest()
        ss = req.resource_spans.add().scope_spans.add()
        for i in range(3):
            ss.spans.add(name=f"s{i}", trace_id=bytes(16), span_id=bytes(8))
        body = req.SerializeToString()
        code, why = await grpc_call(rcv.grpc_port, TRACES, body)
        assert code == grpc.StatusCode.UNIMPLEMENTED
        assert b"no traces pipeline" in why
        status, resp = await http_post(rcv.http_port, "/v1/traces", body)
        assert status == 404
        st = Status.FromString(resp)
        assert st.code == grpc.StatusCode.UNIMPLEMENTED.value[0]
        assert "no traces pipeline" in st.message
        status, resp = await http_post(rcv.http_port, "/v1/traces", b"{}", "application/json")
        assert status == 404 and "no traces pipeline" in json.loads(resp)["message"]
        # Profiles still flow on the same ports.
        code, _ = await grpc_call(rcv.grpc_port, PROFILES, valid_request(10).SerializeToString())
        assert code == grpc.StatusCode.OK
        await rcv.shutdown()
        assert sum(len(b.samples) for b in consumer.batches) == 10
        return host

    host = asyncio.run(main())
    assert host.counters.get("otlp", "traces_refused") == 3
    assert host.counters.get("otlp", "refused_requests_invalid") == 0


def test_json_over_http() -> None:
    from google.protobuf import json_format

    async def main() -> None:
        consumer = ListConsumer()
        rcv = receiver(consumer)
        await rcv.start(Host())
        body = json_format.MessageToJson(valid_request(40)).encode()
        status, resp = await http_post(
            rcv.http_port, "/v1development/profiles", body, "application/json"
        )
        bad, why = await http_post(
            rcv.http_port, "/v1development/profiles", b"{nope", "application/json"
        )
        await rcv.shutdown()
        assert status == 200, resp
        json.loads(resp)
        assert sum(len(b.samples) for b in consumer.batches) == 40
        assert bad == 400 and "bad JSON" in json.loads(why)["message"]

    asyncio.run(main())


def test_full_pipeline_answers_unavailable() -> None:
    async def main() -> None:
        rcv = receiver(ListConsumer(accept=False))
        host = Host()
        await rcv.start(host)
        body = valid_request(20).SerializeToString()
        code, _ = await grpc_call(rcv.grpc_port, PROFILES, body)
        status, _ = await http_post(rcv.http_port, "/v1development/profiles", body)
        await rcv.shutdown()
        assert code == grpc.StatusCode.UNAVAILABLE
        assert status == 503
        assert host.counters.get("otlp", "refused_samples_pipeline_full") == 40

    asyncio.run(main())


def test_port_in_use_is_a_config_error() -> None:
    async def main() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            rcv = receiver(ListConsumer(), grpc=None, http={"endpoint": f"127.0.0.1:{port}"})
            with pytest.raises(ConfigError, match="pick a free port"):
                await rcv.start(Host())

    asyncio.run(main())


def test_unsupported_content_type() -> None:
    async def main() -> None:
        rcv = receiver(ListConsumer())
        await rcv.start(Host())
        status, body = await http_post(rcv.http_port, "/v1development/profiles", b"x", "text/plain")
        await rcv.shutdown()
        assert status == 415
        assert "unsupported content type" in Status.FromString(body).message

    asyncio.run(main())


def test_partial_response_is_a_profiles_response() -> None:
    async def main() -> None:
        rcv = receiver(ListConsumer())
        await rcv.start(Host())
        code, body = await grpc_call(rcv.grpc_port, PROFILES, valid_request(5).SerializeToString())
        await rcv.shutdown()
        assert code == grpc.StatusCode.OK
        assert not ExportProfilesServiceResponse.FromString(body).HasField("partial_success")

    asyncio.run(main())
