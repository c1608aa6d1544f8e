"""POST /v1development/profiles with aiohttp, with OTLP/HTTP's retry rules."""

from __future__ import annotations

import logging

import aiohttp
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceResponse,
)

from collector.sending import PermanentError, RetryableError
from collector.sending.exporter import SendResult
from collector.sending.http import client_ssl, parse_retry_after
from collector.sending.rpc_status import Status
from collector.telemetry import Counters
from exporters.otlp_http.config import OtlpHttpExporterConfig

RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


def _reason(body: bytes) -> str:
    try:
        msg = Status.FromString(body).message
    except DecodeError:
        msg = ""
    return msg or body[:200].decode("utf-8", "replace")


class HttpTransport:
    """Counters (under the exporter's id, once ``attach`` was called): responses_unreadable
    (a 200 whose body is not an ExportProfilesServiceResponse: counted as delivered, since the
    server took it), retry_after_unreadable (the backoff decides the delay instead)."""

    def __init__(self, config: OtlpHttpExporterConfig) -> None:
        self.config = config
        self._counters: Counters | None = None
        self._id = "otlp_http"
        self._log = logging.getLogger("exporters.otlp_http")
        self._logged: set[str] = set()
        self.url = config.url()
        self._session: aiohttp.ClientSession | None = None
        self._headers = {"Content-Type": "application/x-protobuf", **dict(config.header_items())}
        if config.compression == "gzip":
            self._headers["Content-Encoding"] = "gzip"
        # The name sent in SNI and checked against the certificate (None: the URL's host).
        self._sni = config.tls.server_name_override or None

    def attach(self, counters: Counters, component_id: str, logger: logging.Logger) -> None:
        self._counters, self._id, self._log = counters, component_id, logger

    def _note(self, counter: str, msg: str, *args: object) -> None:
        if self._counters is not None:
            self._counters.add(self._id, counter)
        if counter not in self._logged:
            self._logged.add(counter)
            self._log.warning(
                "%s: " + msg + " (logged once; counted as %s)", self._id, *args, counter
            )

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=client_ssl(self.config.tls, self.url)),
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
        )

    async def send(self, payload: bytes) -> SendResult:
        assert self._session is not None, "send before open"
        try:
            async with self._session.post(
                self.url, data=payload, headers=self._headers, server_hostname=self._sni
            ) as r:
                body = await r.read()
                status = r.status
                retry_after = r.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError) as e:
            raise RetryableError(f"http error={type(e).__name__}: {e}") from None
        if status == 200:
            try:
                resp = ExportProfilesServiceResponse.FromString(body)
            except DecodeError:
                self._note(
                    "responses_unreadable",
                    "status 200 with a body that is not an ExportProfilesServiceResponse "
                    "(partial success unknown) body=%r",
                    body[:80],
                )
                return SendResult()
            return SendResult(
                resp.partial_success.rejected_profiles, resp.partial_success.error_message
            )
        msg = f"http status={status} reason={_reason(body)!r}"
        if status in RETRYABLE_STATUS:
            delay = parse_retry_after(retry_after)
            if retry_after and delay is None:
                self._note(
                    "retry_after_unreadable",
                    "unreadable Retry-After header %r; the backoff decides the delay",
                    retry_after[:80],
                )
            raise RetryableError(msg, delay)
        raise PermanentError(msg)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
