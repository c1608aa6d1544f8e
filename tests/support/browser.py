"""Headless Chromium (Debian's ``chromium``) driven over the DevTools protocol.

``async with Browser() as b: page = await b.open(url)`` starts a real browser with its own
profile directory, finds the page's DevTools target and talks to it over a websocket
(aiohttp): evaluate JavaScript, click with real mouse events at page coordinates, take a
screenshot. Everything is on loopback; background networking is switched off.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium() -> str | None:
    return next((p for c in CANDIDATES if (p := shutil.which(c))), None)


def require_chromium() -> str:
    """The browser's path; skips (a failure in CI, see tests/support/ci.py) when missing."""
    path = chromium()
    if path is None:
        pytest.skip("chromium not found (Debian package chromium; scripts/setup.sh test)")
    return path


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict:
        msg_id = next(self._ids)
        await self.ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        async for msg in self.ws:
            data = json.loads(msg.data)
            if data.get("id") == msg_id:
                if "error" in data:
                    raise RuntimeError(f"{method}: {data['error']}")
                return data.get("result", {})
        raise RuntimeError("DevTools connection closed")

    async def evaluate(self, expression: str) -> Any:
        r = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in r:
            raise RuntimeError(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def wait_for(self, expression: str, guard_s: float = 90.0) -> Any:
        """Poll ``expression`` until it is truthy, every 50 ms.

        ``guard_s`` is a hang guard, not a bound: a page that renders in 0.1 s on a quiet machine
        took more than the old 10 s guard (a zoom transition) with the load average in the
        hundreds, so the guard is generous and counted in wall time, not in tries.
        """
        deadline = time.monotonic() + guard_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"never true in the page within {guard_s:g} s: {expression}")
            await asyncio.sleep(0.05)

    async def click(self, x: float, y: float) -> None:
        """A real left click (move, press, release) at page coordinates."""
        await self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        for kind in ("mousePressed", "mouseReleased"):
            await self.call(
                "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
            )

    async def screenshot(self, path: Path) -> None:
        r = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(r["data"]))


class Browser:
    def __init__(self, width: int = 1400, height: int = 900) -> None:
        self.exe = require_chromium()
        self.size = (width, height)
        self._dir = tempfile.TemporaryDirectory(prefix="collector-chromium-")
        self._proc: subprocess.Popen[str] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port = 0

    async def __aenter__(self) -> Browser:
        args = [
            self.exe,
            "--headless=new",
            "--no-sandbox",  # tests run as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            f"--window-size={self.size[0]},{self.size[1]}",
            f"--user-data-dir={self._dir.name}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        # A session of its own: its helper processes (renderer, GPU, crashpad) can be killed
        # as a group at the end, before its profile directory is removed.
        self._proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self._port = await asyncio.to_thread(self._devtools_port)
        self._session = aiohttp.ClientSession()
        return self

    def _devtools_port(self) -> int:
        assert self._proc is not None and self._proc.stderr is not None
        seen = []
        for line in self._proc.stderr:
            seen.append(line)
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if m:
                # Keep draining stderr so a chatty browser never blocks on a full pipe.
                stream = self._proc.stderr
                threading.Thread(target=stream.read, daemon=True).start()
                return int(m.group(1))
        raise RuntimeError("chromium exited before DevTools listened:\n" + "".join(seen))

    async def open(self, url: str) -> Page:
        assert self._session is not None
        base = f"http://127.0.0.1:{self._port}"
        async with self._session.put(f"{base}/json/new?about:blank") as r:
            target = await r.json()
        ws = await self._session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        await page.call("Page.enable")
        await page.call(
            "Emulation.setDeviceMetricsOverride",
            width=self.size[0],
            height=self.size[1],
            deviceScaleFactor=1,
            mobile=False,
        )
        await page.call("Page.navigate", url=url)
        await page.wait_for("document.readyState === 'complete'")
        return page

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self._proc is not None:
            self._proc.terminate()
            try:
                await asyncio.to_thread(self._proc.wait, 10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            # Helpers that outlive the main process still write into the profile directory
            # (CI: "Directory not empty: 'Default'" from the cleanup below).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        for attempt in range(20):  # a killed helper's last writes may still land
            try:
                self._dir.cleanup()
                break
            except OSError:
                if attempt == 19:
                    raise
                await asyncio.sleep(0.1)
