"""The optional page server (``serve: 127.0.0.1:8000``): a page listing the latest flame
graph of each exporter and profile type, refreshed as windows close, and the graphs.

Several flamegraph exporters (one per pipeline, say) with the same ``serve`` address share
one server through ``Host.shared``: each attaches, publishes its graphs, and detaches; the
last one out stops it. Graphs are kept in memory, the latest per (exporter, type) only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass

from aiohttp import web

from collector.errors import EnvironmentProblem

_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'"
)


@dataclass(slots=True)
class Graph:
    id: int  # stable per (exporter, type): the URL /graph/<id>.html
    owner: str
    profile_type: str
    title: str
    samples: int
    updated: float
    page: bytes
    svg: bytes | None


class GraphServer:
    def __init__(self, host: str, port: int, log: logging.Logger) -> None:
        self.host, self.port, self.log = host, port, log
        self.graphs: dict[tuple[str, str], Graph] = {}
        self._ids: dict[tuple[str, str], int] = {}
        self._owners: set[str] = set()
        self._runner: web.AppRunner | None = None
        self._lock = asyncio.Lock()
        self.bound: tuple[str, int] | None = None

    async def attach(self, owner: str) -> None:
        async with self._lock:
            self._owners.add(owner)
            if self._runner is None:
                await self._start(owner)

    async def detach(self, owner: str) -> None:
        async with self._lock:
            self._owners.discard(owner)
            for key in [k for k in self.graphs if k[0] == owner]:
                del self.graphs[key]
            if not self._owners and self._runner is not None:
                await self._runner.cleanup()
                self._runner = None

    def publish(self, owner: str, title: str, ptype: str, samples: int, page: bytes,
                svg: bytes | None, when: float) -> None:  # fmt: skip
        key = (owner, ptype)
        gid = self._ids.setdefault(key, len(self._ids) + 1)
        self.graphs[key] = Graph(gid, owner, ptype, title, samples, when, page, svg)

    async def _start(self, owner: str) -> None:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/index.json", self._list)
        app.router.add_get(r"/graph/{id:\d+}.{ext:html|svg}", self._graph)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise EnvironmentProblem(
                f"{owner}: cannot serve flame graphs on {self.host}:{self.port} "
                f"({e.strerror or e}); choose another `serve` address or remove it"
            ) from e
        self._runner = runner
        addr = runner.addresses[0]
        self.bound = (str(addr[0]), int(addr[1]))
        self.log.info("flame graphs served url=http://%s:%d/", self.host, self.bound[1])

    # -- handlers ----------------------------------------------------------------------------
    def _entries(self) -> list[dict]:
        return [
            {
                "id": g.id,
                "exporter": g.owner,
                "type": g.profile_type,
                "title": g.title,
                "samples": g.samples,
                "updated": g.updated,
                "html": f"/graph/{g.id}.html",
                "svg": f"/graph/{g.id}.svg" if g.svg is not None else None,
            }
            for g in sorted(self.graphs.values(), key=lambda g: (g.owner, g.profile_type))
        ]

    async def _list(self, _: web.Request) -> web.Response:
        return web.json_response(self._entries(), headers={"Cache-Control": "no-store"})

    async def _graph(self, request: web.Request) -> web.Response:
        gid = int(request.match_info["id"])
        g = next((g for g in self.graphs.values() if g.id == gid), None)
        body = None if g is None else (g.page if request.match_info["ext"] == "html" else g.svg)
        if g is None or body is None:
            raise web.HTTPNotFound(text="no such graph (yet)")
        ctype = "text/html" if request.match_info["ext"] == "html" else "image/svg+xml"
        headers = {"Cache-Control": "no-store", "Content-Security-Policy": _CSP}
        return web.Response(body=body, content_type=ctype, charset="utf-8", headers=headers)

    async def _index(self, _: web.Request) -> web.Response:
        initial = json.dumps(self._entries()).replace("<", "\\u003c")
        page = _INDEX.replace("@INITIAL@", initial)
        return web.Response(
            text=page,
            content_type="text/html",
            headers={"Cache-Control": "no-store", "Content-Security-Policy": _CSP},
        )


_INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Flame graphs</title>
<style>
 body { font: 14px Verdana, sans-serif; margin: 16px; }
 table { border-collapse: collapse; } td, th { padding: 4px 12px; text-align: left; }
 tr:nth-child(even) { background: #f3f3f3; } #note { color: #666; font-size: 12px; }
</style></head><body>
<h1>Latest flame graphs</h1>
<table><thead><tr><th>exporter</th><th>type</th><th>window</th><th>samples</th>
<th>graph</th></tr></thead><tbody id="rows"></tbody></table>
<p id="note">Refreshed every 2 s as windows close.</p>
<script>
"use strict";
let last = "";
function show(list) {
  const text = JSON.stringify(list);
  if (text === last) return;
  last = text;
  const rows = document.getElementById("rows");
  rows.textContent = "";
  if (!list.length) {
    const td = rows.insertRow().insertCell();
    td.colSpan = 5; td.textContent = "no window closed yet";
  }
  for (const g of list) {
    const tr = rows.insertRow();
    tr.dataset.id = g.id;
    for (const v of [g.exporter, g.type, g.title, g.samples.toLocaleString("en-US")]) {
      tr.insertCell().textContent = v;
    }
    const td = tr.insertCell();
    for (const [label, href] of [["HTML", g.html], ["SVG", g.svg]]) {
      if (!href) continue;
      const a = document.createElement("a");
      a.href = href; a.textContent = label; a.style.marginRight = "8px";
      td.appendChild(a);
    }
  }
}
show(@INITIAL@);
setInterval(() => fetch("/index.json", {cache: "no-store"})
  .then((r) => r.json()).then(show).catch(() => {}), 2000);
</script></body></html>
"""
