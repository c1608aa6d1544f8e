"""TLS contexts and bearer-token checks for the otlp receiver's gRPC and HTTP servers."""

from __future__ import annotations

import hmac
import ssl
from collections.abc import Awaitable, Callable

import grpc
import grpc.aio

from receivers.otlp.config import AuthSettings, ServerTLSSettings

WWW_AUTHENTICATE = 'Bearer realm="otlp"'


def _read(path: object) -> bytes:
    with open(str(path), "rb") as f:
        return f.read()


def grpc_credentials(tls: ServerTLSSettings) -> grpc.ServerCredentials:
    ca = _read(tls.client_ca_file) if tls.client_ca_file is not None else None
    return grpc.ssl_server_credentials(
        [(_read(tls.key_file), _read(tls.cert_file))],
        root_certificates=ca,
        require_client_auth=ca is not None,
    )


def http_ssl_context(tls: ServerTLSSettings) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.client_ca_file is not None:
        ctx.load_verify_locations(cafile=str(tls.client_ca_file))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class TokenCheck:
    """Compares ``authorization: Bearer <token>`` in constant time."""

    def __init__(self, auth: AuthSettings) -> None:
        self._want = auth.bearer_token.get_secret_value().encode()

    def ok(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self._want)


class GrpcTokenInterceptor(grpc.aio.ServerInterceptor):
    """Every method, known or not, answers UNAUTHENTICATED without the right token."""

    def __init__(self, check: TokenCheck, on_refused: Callable[[str], None]) -> None:
        self._check = check
        self._on_refused = on_refused

        async def deny(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
            return b""

        self._deny = grpc.unary_unary_rpc_method_handler(
            deny, request_deserializer=None, response_serializer=None
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        header = None
        for key, value in details.invocation_metadata or ():  # type: ignore[attr-defined]
            if key == "authorization" and isinstance(value, str):
                header = value
        if self._check.ok(header):
            return await continuation(details)
        self._on_refused(details.method or "")  # type: ignore[attr-defined]
        return self._deny
