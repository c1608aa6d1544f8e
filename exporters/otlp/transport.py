"""ProfilesService/Export over grpc.aio, with OTLP's retryable/permanent status mapping."""

from __future__ import annotations

import grpc
import grpc.aio
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceResponse,
)

from collector.sending import PermanentError, RetryableError
from collector.sending.exporter import SendResult
from collector.sending.rpc_status import STATUS_DETAILS_KEY, retry_delay_from_status
from exporters.otlp.config import OtlpExporterConfig
from exporters.otlp.tls_bridge import TlsBridge

EXPORT_METHOD = "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"

# As the OTel Collector: these may succeed later. RESOURCE_EXHAUSTED is retried too (the
# server's RetryInfo delay is honoured when present). Everything else is permanent.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


def _read(path: object) -> bytes | None:
    if path is None:
        return None
    with open(str(path), "rb") as f:
        return f.read()


class GrpcTransport:
    def __init__(self, config: OtlpExporterConfig) -> None:
        self.config = config
        self._channel: grpc.aio.Channel | None = None
        self._bridge: TlsBridge | None = None
        self._call: grpc.aio.UnaryUnaryMultiCallable | None = None
        self._metadata = tuple(config.header_items())
        self._compression = (
            grpc.Compression.Gzip
            if config.compression == "gzip"
            else grpc.Compression.NoCompression
        )

    async def open(self) -> None:
        c = self.config
        options: list[tuple[str, object]] = [
            ("grpc.max_send_message_length", 64 << 20),
            # gRPC's own reconnect backoff grows to 120 s: a backend back from an outage would
            # stay unseen for minutes while our retries fail fast. Cap it.
            ("grpc.max_reconnect_backoff_ms", 5000),
        ]
        if c.tls.insecure:
            self._channel = grpc.aio.insecure_channel(c.endpoint, options=options)
        elif c.tls.insecure_skip_verify:
            # TLS without checking the server: Python's ssl does the TLS (see tls_bridge).
            self._bridge = TlsBridge(c.endpoint, c.tls.cert_file, c.tls.key_file)
            await self._bridge.start()
            options.append(("grpc.default_authority", c.endpoint))
            self._channel = grpc.aio.insecure_channel(self._bridge.target, options=options)
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(c.tls.ca_file),
                private_key=_read(c.tls.key_file),
                certificate_chain=_read(c.tls.cert_file),
            )
            if c.tls.server_name_override:
                options.append(("grpc.ssl_target_name_override", c.tls.server_name_override))
            self._channel = grpc.aio.secure_channel(c.endpoint, creds, options=options)
        # Payloads are serialized in a worker thread already: pass the bytes through.
        self._call = self._channel.unary_unary(
            EXPORT_METHOD,
            request_serializer=None,
            response_deserializer=ExportProfilesServiceResponse.FromString,
        )

    @property
    def channel(self) -> grpc.aio.Channel:
        """The open channel (spans are forwarded over the same connection)."""
        assert self._channel is not None, "channel before open"
        return self._channel

    async def send(self, payload: bytes) -> SendResult:
        assert self._call is not None, "send before open"
        try:
            resp = await self._call(
                payload,
                timeout=self.config.timeout,
                metadata=self._metadata,
                compression=self._compression,
            )
        except grpc.aio.AioRpcError as e:
            code = e.code()
            msg = f"grpc status={code.name} detail={e.details()!r}"
            if code not in RETRYABLE:
                raise PermanentError(msg) from None
            delay = None
            for key, value in e.trailing_metadata() or ():
                if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
                    delay = retry_delay_from_status(value)
            raise RetryableError(msg, delay) from None
        ps = resp.partial_success
        return SendResult(ps.rejected_profiles, ps.error_message)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
        if self._bridge is not None:
            await self._bridge.close()
            self._bridge = None
