"""POST to Pyroscope with aiohttp: Connect unary Push, or the /ingest API.

Connect unary (connectrpc.com/docs/protocol): a plain HTTP POST of the serialized message
with ``Content-Type: application/proto``; success is 200 with the response message, an
error is a non-200 status with a JSON body ``{"code": "unauthenticated", "message": ...}``.
401/403 and other 4xx are permanent (one counted error, never a retry storm); 408, 429 and
5xx (except 501, not implemented: retrying cannot help) are retried, honouring Retry-After.
"""

from __future__ import annotations

import base64
import json

import aiohttp
from yarl import URL

from collector.sending import PermanentError, RetryableError
from collector.sending.exporter import SendResult
from collector.sending.http import client_ssl, parse_retry_after
from exporters.pyroscope.config import PyroscopeConfig
from exporters.pyroscope.encode import split_ingest
from exporters.pyroscope.proto import PUSH_PATH

INGEST_PATH = "/ingest"
USER_AGENT = "ebpf-profile-collector/0.1.0"


def error_reason(body: bytes) -> tuple[str, str]:
    """(Connect code, message) from an error body; the code is "" for a non-Connect body."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("code"), str):
        return doc["code"], str(doc.get("message", ""))[:300]
    return "", body[:300].decode("utf-8", "replace").strip()


def classify(status: int, body: bytes, retry_after: str | None) -> Exception:
    code, message = error_reason(body)
    msg = f"http status={status}" + (f" code={code}" if code else "") + f" reason={message!r}"
    if status in (401, 403):
        return PermanentError(msg + " (check basic_auth, bearer_token and tenant_id)")
    if status in (408, 429) or (500 <= status <= 599 and status != 501):
        return RetryableError(msg, parse_retry_after(retry_after))
    return PermanentError(msg)


class PyroscopeTransport:
    """Posts one request payload (see encode.py) per ``send``."""

    def __init__(self, config: PyroscopeConfig) -> None:
        self.config = config
        base = config.base_url()
        self.url = base + (PUSH_PATH if config.protocol == "push" else INGEST_PATH)
        self._session: aiohttp.ClientSession | None = None
        self._sni = config.tls.server_name_override or None
        self._headers = self._make_headers()

    def _make_headers(self) -> dict[str, str]:
        c = self.config
        h = {"User-Agent": USER_AGENT}
        if c.protocol == "push":
            h["Content-Type"] = "application/proto"
            h["Connect-Protocol-Version"] = "1"
            h["Connect-Timeout-Ms"] = str(int(c.timeout * 1000))
        else:
            h["Content-Type"] = "application/octet-stream"
        h.update((k, v.get_secret_value()) for k, v in c.headers.items())
        if c.basic_auth is not None:
            pair = f"{c.basic_auth.username}:{c.basic_auth.password.get_secret_value()}"
            h["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        elif c.bearer_token is not None:
            h["Authorization"] = "Bearer " + c.bearer_token.get_secret_value()
        if c.tenant_id:
            h["X-Scope-OrgID"] = c.tenant_id
        return h

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=client_ssl(self.config.tls, self.url)),
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
        )

    async def send(self, payload: bytes) -> SendResult:
        assert self._session is not None, "send before open"
        url, body = self.url, payload
        if self.config.protocol == "ingest":
            query, body = split_ingest(payload)
            url = f"{url}?{query}"
        try:
            async with self._session.post(
                URL(url, encoded=True),
                data=body,
                headers=self._headers,
                server_hostname=self._sni,
                allow_redirects=False,  # a redirected POST would lose its body or auth
            ) as r:
                reply = await r.read()
                status = r.status
                retry_after = r.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError) as e:
            raise RetryableError(f"http error={type(e).__name__}: {e}") from None
        if status != 200:
            raise classify(status, reply, retry_after)
        return SendResult()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
