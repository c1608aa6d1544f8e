"""Real OTLP test servers on 127.0.0.1 with scripted answers, and a recording consumer.

The gRPC one implements ProfilesService/Export with grpc.aio (optionally over TLS); the HTTP
one answers POST /v1development/profiles with aiohttp. Both validate every request they get
against the spec (strict) and keep the decoded requests and the request headers.
"""

from __future__ import annotations

import gzip
import socket
from dataclasses import dataclass, field
from ssl import SSLContext

import grpc
import grpc.aio
from aiohttp import web
from opentelemetry.proto.collector.profiles.v1development import (
    profiles_service_pb2 as svc,
)
from opentelemetry.proto.collector.profiles.v1development import (
    profiles_service_pb2_grpc as svc_grpc,
)

from collector.otlp import validate_request
from collector.sending.rpc_status import STATUS_DETAILS_KEY, status_with_retry_delay


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Answer:
    """One scripted reply: a gRPC status name or HTTP status, with an optional retry delay."""

    code: str = "OK"  # grpc.StatusCode name
    http_status: int = 200
    retry_delay: float | None = None  # RetryInfo (gRPC) / Retry-After seconds (HTTP)
    retry_after_header: str | None = None  # raw Retry-After (e.g. an HTTP date)
    rejected: int = 0  # partial success
    http_body: bytes | None = None  # HTTP: this body instead of an ExportProfilesServiceResponse


@dataclass
class Recorder:
    script: list[Answer] = field(default_factory=list)  # consumed front first, then OK
    requests: list[svc.ExportProfilesServiceRequest] = field(default_factory=list)
    problems: list[list[str]] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    attempts: int = 0

    def next_answer(self) -> Answer:
        self.attempts += 1
        return self.script.pop(0) if self.script else Answer()

    def record(self, req: svc.ExportProfilesServiceRequest, meta: dict[str, str]) -> None:
        self.requests.append(req)
        self.problems.append(validate_request(req, strict=True))
        self.metadata.append(meta)

    @property
    def samples(self) -> int:
        return sum(
            max(len(s.values), len(s.timestamps_unix_nano))
            for r in self.requests
            for rp in r.resource_profiles
            for sp in rp.scope_profiles
            for p in sp.profiles
            for s in p.samples
        )


class _Servicer(svc_grpc.ProfilesServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def Export(self, request, context):
        a = self.rec.next_answer()
        if a.code != "OK":
            trailing = ()
            if a.retry_delay is not None:
                code = grpc.StatusCode[a.code].value[0]
                blob = status_with_retry_delay(code, "test", a.retry_delay)
                trailing = ((STATUS_DETAILS_KEY, blob),)
            context.set_trailing_metadata(trailing)
            await context.abort(grpc.StatusCode[a.code], f"scripted {a.code}")
        meta = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        self.rec.record(request, meta)
        resp = svc.ExportProfilesServiceResponse()
        if a.rejected:
            resp.partial_success.rejected_profiles = a.rejected
            resp.partial_success.error_message = "scripted partial"
        return resp


class GrpcProfilesServer:
    def __init__(self, rec: Recorder, port: int = 0, tls: tuple[bytes, bytes] | None = None):
        self.rec = rec
        self.port = port
        self.tls = tls  # (key pem, cert chain pem)
        self.server: grpc.aio.Server | None = None

    async def start(self) -> None:
        self.server = grpc.aio.server()
        svc_grpc.add_ProfilesServiceServicer_to_server(_Servicer(self.rec), self.server)
        addr = f"127.0.0.1:{self.port}"
        if self.tls:
            creds = grpc.ssl_server_credentials([self.tls])
            self.port = self.server.add_secure_port(addr, creds)
        else:
            self.port = self.server.add_insecure_port(addr)
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=None)
            self.server = None


class HttpProfilesServer:
    def __init__(self, rec: Recorder, port: int = 0, ssl: SSLContext | None = None) -> None:
        self.rec = rec
        self.port = port
        self.ssl = ssl  # HTTPS when given (see tests.support.otlp_tls)
        self.runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        a = self.rec.next_answer()
        if a.http_status != 200:
            headers = {}
            if a.retry_after_header is not None:
                headers["Retry-After"] = a.retry_after_header
            elif a.retry_delay is not None:
                headers["Retry-After"] = str(int(a.retry_delay))
            return web.Response(status=a.http_status, text="scripted", headers=headers)
        body = await request.read()  # aiohttp undoes Content-Encoding: gzip
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        req = svc.ExportProfilesServiceRequest.FromString(body)
        self.rec.record(req, {k.lower(): v for k, v in request.headers.items()})
        if a.http_body is not None:
            return web.Response(body=a.http_body, content_type="application/x-protobuf")
        resp = svc.ExportProfilesServiceResponse()
        return web.Response(body=resp.SerializeToString(), content_type="application/x-protobuf")

    async def start(self) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/v1development/profiles", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.ssl)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


class ListConsumer:
    """A pipeline stand-in for receiver tests: keeps what it is given; can refuse."""

    def __init__(self, accept: bool = True) -> None:
        self.batches: list = []
        self.accept = accept

    def consume(self, batch: object) -> bool:
        if self.accept:
            self.batches.append(batch)
        return self.accept
