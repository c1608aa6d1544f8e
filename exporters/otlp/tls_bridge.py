"""``tls.insecure_skip_verify`` for gRPC: a local bridge that speaks TLS without checks.

Python's gRPC has no switch to skip certificate verification (pinning the server's leaf
would still check its expiry and name, and break on rotation). So the channel talks plain
HTTP/2 to a Unix socket in a private directory (0700), and this bridge carries each
connection to the server over TLS made by Python's ssl module with verification off and
ALPN ``h2``, as a gRPC server requires. The bytes are copied as they are; the cost is two
extra copies per byte in this process, which is small beside encoding the profiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import shutil
import ssl
import tempfile
from pathlib import Path

log = logging.getLogger("exporters.otlp")


def _no_verify_context(cert_file: object, key_file: object) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    if cert_file is not None and key_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file))  # mutual TLS still works
    return ctx


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class TlsBridge:
    def __init__(
        self, endpoint: str, cert_file: object = None, key_file: object = None, sni: str = ""
    ) -> None:
        host, _, port = endpoint.rpartition(":")
        self.host = host.strip("[]")
        self.port = int(port)
        self.sni = sni or (None if _is_ip(self.host) else self.host)
        self._ctx = _no_verify_context(cert_file, key_file)
        self._dir = Path(tempfile.mkdtemp(prefix="collector-otlp-"))  # 0700 by mkdtemp
        self.path = self._dir / "bridge.sock"
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def target(self) -> str:
        return f"unix:{self.path}"

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            try:
                ur, uw = await asyncio.open_connection(
                    self.host, self.port, ssl=self._ctx, server_hostname=self.sni
                )
            except (OSError, ssl.SSLError) as e:
                # The channel sees its connection close and reports UNAVAILABLE (retried).
                log.debug("tls bridge: cannot reach %s:%d: %s", self.host, self.port, e)
                return
            try:
                await asyncio.gather(self._pipe(r, uw), self._pipe(ur, w))
            finally:
                uw.close()
        finally:
            w.close()
            if task is not None:
                self._conns.discard(task)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if dst.can_write_eof():
                    dst.write_eof()

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for t in list(self._conns):
            t.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
        shutil.rmtree(self._dir, ignore_errors=True)
