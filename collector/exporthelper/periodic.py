"""The machinery of exporters that write one file per profile type and time window.

``export`` only adds samples to a ProfileBuilder (one per ProfileType, so types are never
mixed in a file). A timer task closes the window every ``interval``; encoding and writing run
in a worker thread so the event loop is never blocked by a large window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from collector.component import CreateSettings
from collector.errors import EnvironmentProblem
from collector.exporthelper.config import FileExporterConfig
from collector.host import Host
from collector.model import ProfileSet, ProfileType, ProfileWindows, SymbolizedBatch
from collector.telemetry import Counters

Encoder = Callable[[ProfileSet], bytes]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def prepare_directory(path: Path, component_id: str) -> None:
    """Create ``path`` and prove a file can be written there (root ignores mode bits, so a
    permission check alone would lie); raise one clear EnvironmentProblem otherwise."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise EnvironmentProblem(
            f"{component_id}: directory {path} is not writable ({e.strerror or e}); "
            "create it with write permission or set `directory` to another folder"
        ) from e


def file_name(profile_type: ProfileType, start_ns: int, seq: int, suffix: str) -> str:
    """E.g. ``cpu-20261122T101500Z-000003.folded``: type, window start (UTC), sequence."""
    stamp = datetime.fromtimestamp(start_ns / 1e9, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{_UNSAFE.sub('_', profile_type.name) or 'profile'}-{stamp}-{seq:06d}{suffix}"


def write_atomically(path: Path, data: bytes) -> None:
    """Readers never see a partial file: write a hidden temporary, then rename over."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class PeriodicFileExporter:
    """An Exporter of SymbolizedBatch into ``<type>-<time>-<seq><suffix>`` files."""

    def __init__(
        self, settings: CreateSettings, config: FileExporterConfig, encode: Encoder, suffix: str
    ) -> None:
        self.id = settings.id
        self.config = config
        self.encode = encode
        self.suffix = suffix
        self.log = settings.logger or logging.getLogger(__name__)
        self.counters = Counters()
        self._windows = ProfileWindows(config.max_samples)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        self._closed = False
        self._warned_full = False
        self._warned_write = False
        self.files_written = 0
        self.samples_written = 0
        self._name_re = re.compile(rf"^[A-Za-z0-9_.-]+-\d{{8}}T\d{{6}}Z-\d+{re.escape(suffix)}$")

    async def start(self, host: Host) -> None:
        prepare_directory(self.config.directory, self.id)
        self.counters = host.counters
        self._task = asyncio.create_task(self._run(), name=f"{self.id} flush timer")
        self.log.info(
            "exporter started id=%s directory=%s interval_s=%g",
            self.id,
            self.config.directory,
            self.config.interval,
        )

    async def export(self, batch: SymbolizedBatch) -> None:
        if self._closed:
            self.counters.add(self.id, "samples_dropped", len(batch.samples))
            return
        builder = self._windows.add(batch)
        if builder.dropped_samples and not self._warned_full:
            self._warned_full = True
            self.log.warning(
                "window full id=%s max_samples=%d: further samples are dropped and counted "
                "(samples_dropped); raise max_samples or shorten interval",
                self.id,
                self.config.max_samples,
            )

    async def flush(self) -> list[Path]:
        """Close the current window and write one file per profile type that has samples."""
        async with self._lock:
            sets = self._windows.close_all()
            if not sets:
                return []
            return await asyncio.to_thread(self._write_all, sets)

    def _write_all(self, sets: list[ProfileSet]) -> list[Path]:
        written = []
        for ps in sets:
            count = ps.sample_count
            self.counters.add(self.id, "samples_dropped", ps.dropped_samples)
            try:
                data = self.encode(ps)
                path = self._free_path(ps)
                write_atomically(path, data)
            except OSError as e:
                self.counters.add(self.id, "write_errors")
                self.counters.add(self.id, "samples_dropped", count)
                if not self._warned_write:
                    self._warned_write = True
                    self.log.error(
                        "write failed id=%s error=%s (counted: write_errors)",
                        self.id,
                        e,
                    )
                continue
            written.append(path)
            self.files_written += 1
            self.samples_written += count
            self.counters.add(self.id, "files_written")
            self.counters.add(self.id, "samples_written", count)
        if written and self.config.max_files:
            self._prune()
        return written

    def _free_path(self, ps: ProfileSet) -> Path:
        while True:
            self._seq += 1
            path = self.config.directory / file_name(
                ps.profile_type, ps.start_ns, self._seq, self.suffix
            )
            if not path.exists():  # a previous run may have used this name
                return path

    def _prune(self) -> None:
        d = self.config.directory
        try:
            ours = [e for e in os.scandir(d) if e.is_file() and self._name_re.match(e.name)]
            ours.sort(key=lambda e: (e.stat().st_mtime_ns, e.name))
            for e in ours[: max(len(ours) - self.config.max_files, 0)]:
                os.unlink(e.path)
                self.counters.add(self.id, "files_deleted")
        except OSError as e:
            self.log.warning("pruning old files failed id=%s error=%s", self.id, e)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += self.config.interval
            await asyncio.sleep(max(deadline - loop.time(), 0))
            try:
                # Shielded: shutdown cancels the timer, not a half-written window.
                await asyncio.shield(self.flush())
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("flush failed id=%s", self.id)

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        self.log.info(
            "exporter stopped id=%s directory=%s files_written=%d samples_written=%d "
            "samples_dropped=%d",
            self.id,
            self.config.directory,
            self.files_written,
            self.samples_written,
            self.counters.get(self.id, "samples_dropped"),
        )
