"""The otlp receiver exposed safely: TLS, client certificates and a bearer token on gRPC and
HTTP, with CAs and certificates made by openssl in the test, real clients (grpc, aiohttp,
the project's own exporters, the OpenTelemetry SDK's span exporters) on loopback; and the
memory-pressure refusal."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from pathlib import Path

import aiohttp
import grpc
import grpc.aio
import pytest
import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from pydantic import ValidationError

from collector.host import Host
from exporters.otlp import factory as otlp_exporter
from exporters.otlp_http import factory as otlp_http_exporter
from receivers.otlp.config import OtlpReceiverConfig
from tests.receivers.otlp.test_otlp_receiver import PROFILES, receiver, valid_request
from tests.receivers.otlp.test_otlp_receiver_sdk import Watching, workload
from tests.support.otlp_fixtures import make_batches
from tests.support.otlp_run import create, fast_retry
from tests.support.otlp_servers import ListConsumer
from tests.support.otlp_tls import TlsFiles, make_tls

TOKEN = "t0ken-4c9e1b"
BODY = valid_request(40).SerializeToString()


def client_cert(d: Path, ca: TlsFiles, name: str) -> tuple[Path, Path]:
    """A client certificate signed by ``ca`` (whose key make_tls left beside it)."""
    key, csr, cert = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem"
    ca_key = ca.ca.parent / "ca.key"
    for args in (
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            csr,
            "-subj",
            f"/CN={name}",
        ],
        ["x509", "-req", "-in", csr, "-CA", ca.ca, "-CAkey", ca_key, "-CAcreateserial"],
    ):
        if args[0] == "x509":
            args += ["-out", cert, "-days", "2"]
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, object]:
    good, other = tmp_path / "good", tmp_path / "other"
    good.mkdir()
    other.mkdir()
    server = make_tls(good)  # CA 1 and the receiver's certificate
    stranger = make_tls(other)  # CA 2, unknown to the receiver
    return {
        "server": server,
        "client": client_cert(good, server, "agent"),
        "wrong_client": client_cert(other, stranger, "intruder"),
    }


def secure(pki: dict[str, object], mutual: bool = False) -> dict[str, object]:
    server: TlsFiles = pki["server"]  # type: ignore[assignment]
    tls: dict[str, object] = {"cert_file": str(server.cert), "key_file": str(server.key)}
    if mutual:
        tls["client_ca_file"] = str(server.ca)
    side = {"endpoint": "127.0.0.1:0", "tls": tls, "auth": {"bearer_token": TOKEN}}
    return {"grpc": side, "http": side}


async def grpc_secure_call(
    port: int,
    ca: Path,
    token: str | None,
    cert: tuple[Path, Path] | None = None,
    method: str = PROFILES,
) -> grpc.StatusCode:
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=cert[1].read_bytes() if cert else None,
        certificate_chain=cert[0].read_bytes() if cert else None,
    )
    md = (("authorization", f"Bearer {token}"),) if token else ()
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as ch:
        call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            await call(BODY, timeout=5, metadata=md)
        except grpc.aio.AioRpcError as e:
            return e.code()
    return grpc.StatusCode.OK


async def https_post(
    port: int, ca: Path, token: str | None, cert: tuple[Path, Path] | None = None
) -> tuple[int, dict[str, str]]:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    headers = {"Content-Type": "application/x-protobuf"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        url = f"https://127.0.0.1:{port}/v1development/profiles"
        async with s.post(url, data=BODY, headers=headers) as r:
            return r.status, dict(r.headers)


def test_config_refuses_missing_files_and_empty_tokens(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="tls file not found"):
        OtlpReceiverConfig.model_validate(
            {"grpc": {"endpoint": "x:1", "tls": {"cert_file": "/no", "key_file": "/no"}}}
        )
    with pytest.raises(ValidationError, match="bearer_token"):
        OtlpReceiverConfig.model_validate(
            {"grpc": {"endpoint": "x:1", "auth": {"bearer_token": ""}}}
        )
    cfg = OtlpReceiverConfig.model_validate(
        {"http": {"endpoint": "x:1", "auth": {"bearer_token": TOKEN}}}
    )
    assert TOKEN not in repr(cfg) and TOKEN not in cfg.model_dump_json()


def test_token_and_tls_on_grpc_and_http(pki: dict[str, object]) -> None:
    server: TlsFiles = pki["server"]  # type: ignore[assignment]

    async def main() -> tuple[Host, ListConsumer]:
        consumer = ListConsumer()
        rcv = receiver(consumer, **secure(pki))
        host = Host()
        await rcv.start(host)
        g, h = rcv.grpc_port, rcv.http_port
        assert await grpc_secure_call(g, server.ca, None) == grpc.StatusCode.UNAUTHENTICATED
        assert await grpc_secure_call(g, server.ca, "wrong") == grpc.StatusCode.UNAUTHENTICATED
        assert await grpc_secure_call(g, server.ca, TOKEN) == grpc.StatusCode.OK
        status, headers = await https_post(h, server.ca, None)
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert (await https_post(h, server.ca, "wrong"))[0] == 401
        assert (await https_post(h, server.ca, TOKEN))[0] == 200
        # Plain text to a TLS port does not get through at all.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{g}") as ch:
            call = ch.unary_unary(PROFILES, request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(BODY, timeout=5, metadata=(("authorization", f"Bearer {TOKEN}"),))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # The project's own exporters with the CA and the token deliver profiles.
        for fac, endpoint in (
            (otlp_exporter, f"127.0.0.1:{g}"),
            (otlp_http_exporter, f"https://127.0.0.1:{h}"),
        ):
            exp = create(
                fac,
                {
                    "endpoint": endpoint,
                    "tls": {"ca_file": str(server.ca)},
                    "headers": {"Authorization": f"Bearer {TOKEN}"},
                    "interval": "1h",
                    "retry_on_failure": fast_retry(),
                },
            )
            eh = Host()
            await exp.start(eh)
            await exp.export(make_batches(50)[0])
            await exp.shutdown()
            assert eh.counters.get(fac.type, "sent_samples") == 50
        await rcv.shutdown()
        return host, consumer

    host, consumer = asyncio.run(main())
    c = host.counters
    assert c.get("otlp", "refused_requests_unauthenticated") == 4
    assert c.get("otlp", "received_samples") == 40 + 40 + 50 + 50
    assert sum(len(b.samples) for b in consumer.batches) == 180


def test_client_certificates_are_checked_in_the_handshake(pki: dict[str, object]) -> None:
    server: TlsFiles = pki["server"]  # type: ignore[assignment]
    good, wrong = pki["client"], pki["wrong_client"]

    async def main() -> Host:
        rcv = receiver(ListConsumer(), **secure(pki, mutual=True))
        host = Host()
        await rcv.start(host)
        g, h = rcv.grpc_port, rcv.http_port
        # Refused before any request is read: the token does not help.
        for cert in (None, wrong):
            code = await grpc_secure_call(g, server.ca, TOKEN, cert)  # type: ignore[arg-type]
            assert code == grpc.StatusCode.UNAVAILABLE
            with pytest.raises((aiohttp.ClientError, ssl.SSLError)):
                await https_post(h, server.ca, TOKEN, cert)  # type: ignore[arg-type]
        assert host.counters.get("otlp", "received_requests") == 0
        code = await grpc_secure_call(g, server.ca, TOKEN, good)  # type: ignore[arg-type]
        assert code == grpc.StatusCode.OK
        assert (await https_post(h, server.ca, TOKEN, good))[0] == 200  # type: ignore[arg-type]
        await rcv.shutdown()
        return host

    host = asyncio.run(main())
    assert host.counters.get("otlp", "received_requests") == 2


def test_otel_sdk_with_token_and_ca_gets_past_auth(pki: dict[str, object]) -> None:
    """The SDK's span exporters with the CA and the token reach the traces handler (which
    refuses traces: UNIMPLEMENTED / 404, counted as traces_refused), not the auth check;
    without the token they are stopped at the door (refused_requests_unauthenticated)."""
    server: TlsFiles = pki["server"]  # type: ignore[assignment]

    async def main() -> Host:
        rcv = receiver(ListConsumer(), **secure(pki))
        host = Host()
        await rcv.start(host)
        creds = grpc.ssl_channel_credentials(root_certificates=server.ca.read_bytes())
        auth = {"authorization": f"Bearer {TOKEN}"}
        url = f"https://127.0.0.1:{rcv.http_port}/v1/traces"

        def session() -> requests.Session:
            # requests lets REQUESTS_CA_BUNDLE (set on many machines, this one included)
            # override a session's CA file; an application passing its own CA turns that off.
            s = requests.Session()
            s.trust_env = False
            return s

        exporters = {
            "grpc": GrpcSpans(
                endpoint=f"127.0.0.1:{rcv.grpc_port}", credentials=creds, headers=auth, timeout=5
            ),
            "http": HttpSpans(
                endpoint=url,
                certificate_file=str(server.ca),
                headers=auth,
                timeout=5,
                session=session(),
            ),
            "grpc_no_token": GrpcSpans(
                endpoint=f"127.0.0.1:{rcv.grpc_port}", credentials=creds, timeout=5
            ),
            "http_no_token": HttpSpans(
                endpoint=url, certificate_file=str(server.ca), timeout=5, session=session()
            ),
        }
        for name, inner in exporters.items():
            watched = Watching(inner)
            done: list[int] = []
            t = threading.Thread(target=workload, args=(watched, 1, done))
            t.start()
            await asyncio.to_thread(t.join)
            assert done == [0] and len(watched.results) == 2, name
        await rcv.shutdown()
        return host

    host = asyncio.run(main())
    assert host.counters.get("otlp", "traces_refused") == 4  # 2 spans x (grpc, http) with token
    assert host.counters.get("otlp", "refused_requests_unauthenticated") == 4


def test_memory_pressure_refuses_with_retry() -> None:
    async def main() -> Host:
        consumer = ListConsumer()
        rcv = receiver(consumer)
        host = Host()
        await rcv.start(host)
        host.pressure.set(1, 500 << 20)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{rcv.grpc_port}") as ch:
            call = ch.unary_unary(PROFILES, request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(BODY, timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # retryable for senders
        async with aiohttp.ClientSession() as s:
            url = f"http://127.0.0.1:{rcv.http_port}/v1development/profiles"
            h = {"Content-Type": "application/x-protobuf"}
            async with s.post(url, data=BODY, headers=h) as r:
                assert r.status == 503 and r.headers["Retry-After"] == "1"
        host.pressure.set(0, 100 << 20)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{rcv.grpc_port}") as ch:
            call = ch.unary_unary(PROFILES, request_serializer=None, response_deserializer=None)
            await call(BODY, timeout=5)
        await rcv.shutdown()
        assert sum(len(b.samples) for b in consumer.batches) == 40
        return host

    host = asyncio.run(main())
    assert host.counters.get("otlp", "refused_requests_memory_pressure") == 2
