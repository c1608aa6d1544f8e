"""A small HTTP/1.1 responder on asyncio streams for the telemetry server's three GET paths.

Why not aiohttp, which the project has: importing it costs 13.8 MB of resident memory after
asyncio (``benchmarks/memory.py imports``), and the telemetry server is on by default, so
every collector paid that for /metrics, /healthz and /readyz (the default pipeline's imports:
52.8 MB RSS with aiohttp, 42.9 MB with this responder). What these
paths need is small: GET or HEAD, no request body, one response per connection
(``Connection: close``, which Prometheus and Kubernetes probes accept).

Hostile or broken clients cost bounded work: the request head is read with a size limit
(``MAX_HEAD``: 431) and a deadline (``HEAD_TIMEOUT_S``: the connection is closed), a request
that is not ``METHOD target HTTP/1.x`` gets 400, another method 405, at most
``MAX_CONNECTIONS`` are served at once (more are closed at once), each counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

MAX_HEAD = 8192
HEAD_TIMEOUT_S = 10.0
WRITE_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 32
LINGER_S = 1.0  # after an error reply: how long, and how much, of the request to drop
LINGER_BYTES = 1 << 20

log = logging.getLogger("collector.selfmetrics")


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Handler = Callable[[], Awaitable[Reply]]


class HttpResponder:
    """Serves ``routes`` (path -> handler) on host:port; ``count(name)`` is called for each
    refused or failed request (``http_bad_request``, ``http_head_too_large``, ...)."""

    def __init__(self, routes: dict[str, Handler], count: Callable[[str], None]) -> None:
        self._routes = routes
        self._count = count
        self._server: asyncio.Server | None = None
        self._active = 0
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        """Listen; raises OSError when the address cannot be bound."""
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._active >= MAX_CONNECTIONS:
            self._count("http_connections_refused")
            writer.close()
            return
        self._active += 1
        try:
            reply, head_only = await self._answer(reader)
            if reply is not None:
                await asyncio.wait_for(self._send(writer, reply, head_only), WRITE_TIMEOUT_S)
                if reply.status >= 400:
                    await self._linger(reader, writer)
        except (ConnectionError, TimeoutError):
            self._count("http_connection_errors")
        except Exception:  # a handler's failure must not end the server
            self._count("http_handler_errors")
            log.warning("telemetry: request failed", exc_info=True)
        finally:
            self._active -= 1
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[Reply | None, bool]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        except asyncio.LimitOverrunError:
            self._count("http_head_too_large")
            return Reply(431, b"request head too large\n"), False
        except asyncio.IncompleteReadError:
            return None, False  # closed before a whole request: nothing to answer
        except TimeoutError:
            self._count("http_head_timeouts")
            return None, False
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._count("http_bad_request")
            return Reply(400, b"bad request\n"), False
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            self._count("http_bad_method")
            return Reply(405, b"GET or HEAD only\n"), False
        handler = self._routes.get(target.decode("latin-1"))
        if handler is None:
            return Reply(404, b"not found\n"), method == b"HEAD"
        return await handler(), method == b"HEAD"

    @staticmethod
    async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """After refusing a request that may not have been read whole (a head too large, a
        body): end the reply, then read and drop what the client still sends (bounded), so
        that closing with unread data does not reset the connection before the client has
        read the reply."""
        writer.write_eof()
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(LINGER_S):
                left = LINGER_BYTES
                while left > 0 and (chunk := await reader.read(min(left, 65536))):
                    left -= len(chunk)

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, reply: Reply, head_only: bool) -> None:
        reason = HTTPStatus(reply.status).phrase
        head = (
            f"HTTP/1.1 {reply.status} {reason}\r\n"
            f"Content-Type: {reply.content_type}\r\n"
            f"Content-Length: {len(reply.body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1")
        writer.write(head if head_only else head + reply.body)
        await writer.drain()
