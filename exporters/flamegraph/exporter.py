"""Writes each window as an interactive HTML flame graph (and a static SVG), and serves the
latest ones when ``serve`` is set. Rendering and writing run in a worker thread; the file
handling (names, modes, pruning, counters) is the shared PeriodicFileExporter's."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from collector.component import CreateSettings
from collector.exporthelper import PeriodicFileExporter
from collector.host import Host
from collector.model import ProfileSet
from exporters.flamegraph import html, svg
from exporters.flamegraph.config import FlamegraphConfig, is_loopback
from exporters.flamegraph.tree import Tree, build, diff, prune

if TYPE_CHECKING:  # aiohttp (11 MB resident) only when `serve` is set
    from exporters.flamegraph.server import GraphServer

SUFFIXES = (".html", ".svg")


class FlamegraphExporter(PeriodicFileExporter):
    """Counters: files_written, samples_written, samples_dropped, encode_errors,
    write_errors, files_deleted, prune_errors, frames_pruned, render_ms (CPU)."""

    config: FlamegraphConfig

    def __init__(self, settings: CreateSettings, config: FlamegraphConfig) -> None:
        super().__init__(settings, config, suffixes=SUFFIXES)
        # Per profile type: the previous window's title and (pruned) tree, for the diff.
        self._previous: dict[str, tuple[str, Tree]] = {}
        self._host: Host | None = None
        self._server: GraphServer | None = None
        self._server_key: tuple[str, str, int] | None = None

    async def start(self, host: Host) -> None:
        await super().start(host)
        self._host = host
        addr = self.config.address()
        if addr is None:
            return
        key = ("flamegraph.serve", *addr)
        from exporters.flamegraph.server import GraphServer  # imports aiohttp: only if served

        server = host.shared(key, lambda: GraphServer(addr[0], addr[1], self.log))
        try:
            await server.attach(self.id)
        except BaseException:
            host.release(key)
            raise
        self._server, self._server_key = server, key
        if not is_loopback(addr[0]):
            self.log.warning(
                "%s: serving flame graphs on %s, not loopback: anyone who can reach it "
                "sees every process's functions",
                self.id,
                addr[0],
            )

    @property
    def url(self) -> str | None:
        """Where the page is served (the bound port when ``serve`` asked for port 0)."""
        if self._server is None or self._server.bound is None:
            return None
        return f"http://{self._server.host}:{self._server.bound[1]}/"

    def files(self, ps: ProfileSet) -> dict[str, bytes | None]:
        t0 = time.thread_time_ns()
        tree = build(ps)
        prune(tree, self.config.max_nodes)
        self.counters.add(self.id, "frames_pruned", tree.pruned)
        pt = ps.profile_type.name
        prev = self._previous.get(pt)
        diff(tree, prev[1] if prev else None)
        page = html.render(ps, tree, self.id, prev[0] if prev else "")
        image = svg.render(ps, tree, self.id) if self.config.svg else None
        self._previous[pt] = (html.title(ps), tree)
        # This thread's CPU time, so the cost of the default pipeline's graphs is visible.
        self.counters.add(self.id, "render_ms", (time.thread_time_ns() - t0) // 1_000_000)
        return {".html": page, ".svg": image}

    def encoded(self, ps: ProfileSet, files: dict[str, bytes | None]) -> None:
        # The page is served even when writing its file fails (a full disk).
        page = files.get(".html")
        if self._server is not None and page is not None:
            self._server.publish(
                self.id, html.title(ps), ps.profile_type.name, ps.sample_count, page,
                files.get(".svg"), time.time(),
            )  # fmt: skip

    async def shutdown(self) -> None:
        if self._closed:
            return
        await super().shutdown()
        if self._server is not None and self._host is not None and self._server_key:
            await self._server.detach(self.id)
            self._host.release(self._server_key)
            self._server = None
