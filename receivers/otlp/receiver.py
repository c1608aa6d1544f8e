"""The otlp receiver: ProfilesService over grpc.aio and aiohttp; TraceService too when a
traces pipeline takes this receiver, else it is answered UNIMPLEMENTED / 404 (and counted).

Each side may have TLS (optionally requiring client certificates) and a bearer token; a
request without the token is refused (UNAUTHENTICATED / 401) before its body is read.
While the collector is under memory pressure (Host.pressure, set by memory_limiter),
requests are refused with UNAVAILABLE / 503 so senders keep their data and retry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from aiohttp import web
from google.protobuf import json_format
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
    ExportProfilesServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from collector import logs
from collector.component import CreateSettings
from collector.errors import ConfigError
from collector.host import Host
from collector.sending.rpc_status import Status
from receivers.otlp.config import EndpointSettings, OtlpReceiverConfig
from receivers.otlp.handler import Handler, Outcome
from receivers.otlp.security import (
    WWW_AUTHENTICATE,
    GrpcTokenInterceptor,
    TokenCheck,
    grpc_credentials,
    http_ssl_context,
)

PROFILES_SERVICE = "opentelemetry.proto.collector.profiles.v1development.ProfilesService"
TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
PROFILES_PATH = "/v1development/profiles"
TRACES_PATH = "/v1/traces"
_PROTO = "application/x-protobuf"
_JSON = "application/json"


def _split(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"otlp receiver: endpoint {endpoint!r} is not host:port")
    return host.strip("[]"), int(port)


def _tls_mode(ep: EndpointSettings | None) -> str:
    if ep is None or ep.tls is None:
        return "off"
    return "mutual" if ep.tls.client_ca_file is not None else "on"


def _raw(fn: Callable[..., Awaitable[bytes]]) -> grpc.RpcMethodHandler:
    # Raw bytes in: a malformed message must become INVALID_ARGUMENT, not INTERNAL.
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=None, response_serializer=None
    )


class OtlpReceiver:
    def __init__(self, settings: CreateSettings, config: OtlpReceiverConfig) -> None:
        assert settings.consumer is not None, "a receiver needs a consumer"
        self.id = settings.id
        self.log: logging.Logger = settings.logger
        self.config = config
        self.handler = Handler(settings.id, settings.consumer, settings.logger, config.strict)
        self._grpc: grpc.aio.Server | None = None
        self._runner: web.AppRunner | None = None
        self.grpc_port = 0  # the bound ports, known after start (endpoints may say port 0)
        self.http_port = 0
        self._say = logs.Throttle(settings.logger)

    async def start(self, host: Host) -> None:
        self.handler.host = host
        try:
            if self.config.grpc is not None:
                await self._start_grpc(self.config.grpc)
            if self.config.http is not None:
                await self._start_http(self.config.http)
        except BaseException:
            await self.shutdown()
            raise
        self.log.info(
            "%s: listening grpc_port=%s http_port=%s grpc_tls=%s http_tls=%s auth=%s",
            self.id,
            self.grpc_port or "-",
            self.http_port or "-",
            _tls_mode(self.config.grpc),
            _tls_mode(self.config.http),
            ",".join(
                side
                for side, ep in (("grpc", self.config.grpc), ("http", self.config.http))
                if ep is not None and ep.auth is not None
            )
            or "none",
        )

    def _unauthenticated(self, what: str) -> None:
        self.handler.count("refused_requests_unauthenticated")
        self._say(logging.WARNING, "%s: refused a request without the right bearer token", self.id)

    def _pressure(self) -> bool:
        """True while memory_limiter says the collector is above its soft limit."""
        host = self.handler.host
        if host is None or not host.pressure.level:
            return False
        self.handler.count("refused_requests_memory_pressure")
        return True

    # -- gRPC -------------------------------------------------------------------------------
    async def _start_grpc(self, ep: EndpointSettings) -> None:
        endpoint = ep.endpoint
        size = self.config.max_recv_msg_size
        interceptors = []
        if ep.auth is not None:
            interceptors.append(GrpcTokenInterceptor(TokenCheck(ep.auth), self._unauthenticated))
        server = grpc.aio.server(
            options=[("grpc.max_receive_message_length", size)], interceptors=interceptors
        )

        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    PROFILES_SERVICE, {"Export": _raw(self._grpc_profiles)}
                ),
                grpc.method_handlers_generic_handler(
                    TRACE_SERVICE, {"Export": _raw(self._grpc_traces)}
                ),
            )
        )
        try:
            if ep.tls is not None:
                port = server.add_secure_port(endpoint, grpc_credentials(ep.tls))
            else:
                port = server.add_insecure_port(endpoint)
        except RuntimeError as e:
            raise ConfigError(
                f"otlp receiver: cannot listen on {endpoint} (gRPC): {e}; pick a free port"
            ) from None
        if not port:
            raise ConfigError(
                f"otlp receiver: cannot listen on {endpoint} (gRPC); pick a free port"
            )
        self._grpc = server
        await server.start()
        self.grpc_port = port

    async def _grpc_reply(self, out: Outcome, context: grpc.aio.ServicerContext) -> bytes:
        if out.status == "invalid":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, out.message)
        if out.status == "unavailable":
            await context.abort(grpc.StatusCode.UNAVAILABLE, out.message)
        if out.status == "unimplemented":
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, out.message)
        return out.response

    async def _grpc_profiles(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if self._pressure():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "collector under memory pressure")
        return await self._grpc_reply(await self.handler.profiles(body), context)

    async def _grpc_traces(self, body: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if self.handler.takes_traces() and self._pressure():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "collector under memory pressure")
        return await self._grpc_reply(await self.handler.spans(body), context)

    # -- HTTP -------------------------------------------------------------------------------
    async def _start_http(self, ep: EndpointSettings) -> None:
        endpoint = ep.endpoint
        host, port = _split(endpoint)
        middlewares = []
        if ep.auth is not None:
            check = TokenCheck(ep.auth)

            @web.middleware
            async def bearer(request: web.Request, handler: Any) -> web.StreamResponse:
                # Checked before the body is read: an unauthenticated sender costs nothing.
                if check.ok(request.headers.get("Authorization")):
                    return await handler(request)
                self._unauthenticated(request.path)
                ctype = _JSON if request.content_type == _JSON else _PROTO
                resp = self._http_error(401, "missing or wrong bearer token", ctype)
                resp.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
                return resp

            middlewares.append(bearer)
        app = web.Application(
            client_max_size=self.config.max_recv_msg_size, middlewares=middlewares
        )
        app.router.add_post(PROFILES_PATH, self._http_profiles)
        app.router.add_post(TRACES_PATH, self._http_traces)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runner = runner
        ssl_ctx = http_ssl_context(ep.tls) if ep.tls is not None else None
        site = web.TCPSite(runner, host, port, ssl_context=ssl_ctx)
        try:
            await site.start()
        except OSError as e:
            raise ConfigError(
                f"otlp receiver: cannot listen on {endpoint} (HTTP): {e.strerror}; pick a free port"
            ) from None
        self.http_port = runner.addresses[0][1]

    async def _read(self, request: web.Request) -> bytes | web.Response:
        ctype = request.content_type
        if ctype not in (_PROTO, _JSON):
            return self._http_error(415, f"unsupported content type {ctype!r}", _PROTO)
        try:
            # aiohttp decompresses gzip bodies and enforces client_max_size on the result.
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.handler.count("refused_requests_oversized")
            return self._http_error(
                413, f"request larger than max_recv_msg_size={self.config.max_recv_msg_size}", ctype
            )

    def _http_error(self, status: int, message: str, ctype: str) -> web.Response:
        code = {400: 3, 401: 16, 404: 12, 413: 8, 415: 3, 503: 14}.get(status, 2)
        if ctype == _JSON:
            body = json.dumps({"code": code, "message": message}).encode()
        else:
            body = Status(code=code, message=message).SerializeToString()
        headers = {"Retry-After": "1"} if status == 503 else None
        return web.Response(status=status, body=body, content_type=ctype, headers=headers)

    def _http_reply(self, out: Outcome, ctype: str, response_type: type) -> web.Response:
        if out.status == "invalid":
            return self._http_error(400, out.message, ctype)
        if out.status == "unavailable":
            return self._http_error(503, out.message, ctype)
        if ctype == _JSON:
            msg = response_type.FromString(out.response)
            return web.Response(body=json_format.MessageToJson(msg).encode(), content_type=_JSON)
        return web.Response(body=out.response, content_type=_PROTO)

    async def _http_profiles(self, request: web.Request) -> web.Response:
        if self._pressure():  # refused before the body is read into memory
            ctype = _JSON if request.content_type == _JSON else _PROTO
            return self._http_error(503, "collector under memory pressure", ctype)
        body = await self._read(request)
        if isinstance(body, web.Response):
            return body
        ctype = request.content_type
        req = None
        if ctype == _JSON:
            try:
                req = json_format.Parse(body, ExportProfilesServiceRequest())
            except (json_format.ParseError, UnicodeDecodeError) as e:
                self.handler.count("received_requests")
                return self._http_reply(
                    self.handler.invalid(f"bad JSON: {e}"), ctype, ExportProfilesServiceResponse
                )
        out = await self.handler.profiles(body, req)
        return self._http_reply(out, ctype, ExportProfilesServiceResponse)

    async def _http_traces(self, request: web.Request) -> web.Response:
        ctype = _JSON if request.content_type == _JSON else _PROTO
        if not self.handler.takes_traces():
            # The body is not read: nothing would be done with it.
            return self._http_error(404, self.handler.traces().message, ctype)
        if self._pressure():
            return self._http_error(503, "collector under memory pressure", ctype)
        body = await self._read(request)
        if isinstance(body, web.Response):
            return body
        if request.content_type == _JSON:
            try:  # forwarded as protobuf: exporters send gRPC
                body = json_format.Parse(body, ExportTraceServiceRequest()).SerializeToString()
            except (json_format.ParseError, UnicodeDecodeError) as e:
                self.handler.count("received_trace_requests")
                return self._http_reply(
                    self.handler.invalid(f"bad JSON: {e}"), ctype, ExportTraceServiceResponse
                )
        out = await self.handler.spans(body)
        return self._http_reply(out, ctype, ExportTraceServiceResponse)

    # -- lifecycle --------------------------------------------------------------------------
    async def shutdown(self) -> None:
        self._say.flush(final=True)
        if self._grpc is not None:
            server, self._grpc = self._grpc, None
            await server.stop(grace=2.0)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
