"""Writes each window as an interactive HTML flame graph (and a static SVG), and serves the
latest ones when ``serve`` is set. Rendering and writing run in a worker thread."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

from collector.component import CreateSettings
from collector.exporthelper import dir_mode, file_name, prepare_directory, write_atomically
from collector.host import Host
from collector.model import ProfileSet, SymbolizedBatch
from collector.pipeline.queues import batch_len
from collector.pipeline.windowing import BatchWindows
from collector.telemetry import Counters
from exporters.flamegraph import html, svg
from exporters.flamegraph.config import FlamegraphConfig, is_loopback
from exporters.flamegraph.server import GraphServer
from exporters.flamegraph.tree import Tree, build, diff, prune

SUFFIXES = (".html", ".svg")


class FlamegraphExporter:
    """Counters: files_written, samples_written, samples_dropped, encode_errors,
    write_errors, files_deleted, prune_errors, frames_pruned, render_ms (CPU)."""

    def __init__(self, settings: CreateSettings, config: FlamegraphConfig) -> None:
        self.id = settings.id
        self.config = config
        self.log = settings.logger
        self.counters = Counters()
        self._batches = BatchWindows(self.id, config.window(), self._write_set)
        self._lock = asyncio.Lock()
        self._seq = 0
        # Per profile type: the previous window's title and (pruned) tree, for the diff.
        self._previous: dict[str, tuple[str, Tree]] = {}
        self._host: Host | None = None
        self._server: GraphServer | None = None
        self._server_key: tuple[str, str, int] | None = None
        self._closed = False
        self._warned_write = False
        self._names = [
            re.compile(rf"^[A-Za-z0-9_.-]+-\d{{8}}T\d{{6}}Z-\d+{re.escape(s)}$") for s in SUFFIXES
        ]

    async def start(self, host: Host) -> None:
        self._host = host
        self.counters = host.counters
        self._batches.counters = host.counters
        prepare_directory(self.config.directory, self.id, dir_mode(self.config.file_mode))
        addr = self.config.address()
        if addr is not None:
            key = ("flamegraph.serve", *addr)
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
        self.log.info("exporter started id=%s directory=%s", self.id, self.config.directory)

    @property
    def url(self) -> str | None:
        """Where the page is served (the bound port when ``serve`` asked for port 0)."""
        if self._server is None or self._server.bound is None:
            return None
        return f"http://{self._server.host}:{self._server.bound[1]}/"

    async def export(self, item: ProfileSet | SymbolizedBatch) -> None:
        if self._closed:
            self.counters.add(self.id, "samples_dropped", batch_len(item))
            return
        if isinstance(item, ProfileSet):
            await self._write_set(item)
        else:
            await self._batches.add(item)

    async def flush(self) -> list[Path]:
        return [p for paths in await self._batches.flush() for p in paths]

    async def _write_set(self, ps: ProfileSet) -> list[Path]:
        async with self._lock:  # one writer: sequence numbers, diffs and pruning stay in order
            paths, page, image = await asyncio.to_thread(self._write, ps)
        if self._server is not None and page is not None:
            self._server.publish(
                self.id, html.title(ps), ps.profile_type.name, ps.sample_count, page, image,
                time.time(),
            )  # fmt: skip
        return paths

    def _render(self, ps: ProfileSet) -> tuple[bytes, bytes | None]:
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
        return page, image

    def _write(self, ps: ProfileSet) -> tuple[list[Path], bytes | None, bytes | None]:
        count = ps.sample_count
        self.counters.add(self.id, "samples_dropped", ps.dropped_samples)
        try:
            page, image = self._render(ps)
        except Exception:  # a bug in rendering: count the window, keep the exporter
            self.counters.add(self.id, "encode_errors")
            self.counters.add(self.id, "samples_dropped", count)
            self.log.exception("rendering failed id=%s samples=%d", self.id, count)
            return [], None, None
        stem = self._free_stem(ps)
        written: list[Path] = []
        try:
            for suffix, data in ((".html", page), (".svg", image)):
                if data is not None:
                    path = stem.with_name(stem.name + suffix)
                    write_atomically(path, data, self.config.file_mode)
                    written.append(path)
        except OSError as e:
            self.counters.add(self.id, "write_errors")
            self.counters.add(self.id, "samples_dropped", count)
            if not self._warned_write:
                self._warned_write = True
                self.log.error("write failed id=%s error=%s (counted: write_errors)", self.id, e)
            return written, page, image
        self.counters.add(self.id, "files_written", len(written))
        self.counters.add(self.id, "samples_written", count)
        if self.config.max_files:
            self._prune()
        return written, page, image

    def _free_stem(self, ps: ProfileSet) -> Path:
        while True:
            self._seq += 1
            stem = self.config.directory / file_name(ps.profile_type, ps.start_ns, self._seq, "")
            if not any(stem.with_name(stem.name + s).exists() for s in SUFFIXES):
                return stem

    def _prune(self) -> None:
        try:
            for pattern in self._names:
                ours = [
                    e for e in os.scandir(self.config.directory)
                    if e.is_file() and pattern.match(e.name)
                ]  # fmt: skip
                ours.sort(key=lambda e: (e.stat().st_mtime_ns, e.name))
                for e in ours[: max(len(ours) - self.config.max_files, 0)]:
                    os.unlink(e.path)
                    self.counters.add(self.id, "files_deleted")
        except OSError as e:
            self.counters.add(self.id, "prune_errors")
            self.log.warning("pruning old files failed id=%s error=%s", self.id, e)

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._batches.shutdown()
        if self._server is not None and self._host is not None and self._server_key:
            await self._server.detach(self.id)
            self._host.release(self._server_key)
            self._server = None
        self.log.info(
            "exporter stopped id=%s directory=%s files_written=%d samples_written=%d",
            self.id,
            self.config.directory,
            self.counters.get(self.id, "files_written"),
            self.counters.get(self.id, "samples_written"),
        )
