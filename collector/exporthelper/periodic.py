"""The machinery of exporters that write one file per profile type and time window.

The pipeline cuts the windows (collector/pipeline/windowing.py) and hands each window's
ProfileSet to ``export``; encoding and writing run in a worker thread so the event loop is
never blocked by a large window. Files are created with ``file_mode`` (0600 by default:
profiles name every process's binaries and stacks) and folders the exporter creates with the
matching directory mode (0700), whatever the umask.
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
from collector.exporthelper.config import FileExporterConfig, dir_mode
from collector.host import Host
from collector.model import ProfileSet, ProfileType, SymbolizedBatch
from collector.pipeline.queues import batch_len
from collector.pipeline.windowing import BatchWindows
from collector.telemetry import Counters

Encoder = Callable[[ProfileSet], bytes]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _make_dirs(path: Path, mode: int) -> None:
    """mkdir -p, each created folder chmod'ed to ``mode`` (mkdir's mode is umasked)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue  # made meanwhile by someone else: theirs, keep its mode
        os.chmod(d, mode)


def prepare_directory(path: Path, component_id: str, mode: int = 0o700) -> None:
    """Create ``path`` (new folders get ``mode``; an existing folder keeps its own) and prove
    a file can be written there (root ignores mode bits, so a permission check alone would
    lie); raise one clear EnvironmentProblem otherwise."""
    try:
        _make_dirs(path, mode)
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


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Readers never see a partial file: write a hidden temporary, then rename over.

    The temporary is opened without following a symlink and chmod'ed to ``mode`` before any
    byte is written, so neither the umask nor a stale temporary widens who can read it.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, _CREATE, mode)
        with open(fd, "wb") as f:
            os.fchmod(fd, mode)
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class PeriodicFileExporter:
    """An Exporter of ProfileSets into ``<type>-<time>-<seq><suffix>`` files.

    A window becomes one file per suffix: ``encode`` gives the one file of a single-file
    exporter (pprof, folded); a subclass with several (flame graphs: ``.html`` and ``.svg``)
    passes ``suffixes`` and overrides ``files``. ``export`` also takes SymbolizedBatches when
    the exporter runs outside a pipeline (then it windows them itself with its
    ``interval``/``max_samples``; see BatchWindows).
    """

    def __init__(
        self,
        settings: CreateSettings,
        config: FileExporterConfig,
        encode: Encoder | None = None,
        suffix: str = "",
        *,
        suffixes: tuple[str, ...] = (),
    ) -> None:
        self.id = settings.id
        self.config = config
        self.encode = encode
        self.suffix = suffix
        self.suffixes = suffixes or (suffix,)
        self.log = settings.logger or logging.getLogger(__name__)
        self.counters = Counters()
        self._batches = BatchWindows(self.id, config.window(), self._write_set)
        self._lock = asyncio.Lock()
        self._seq = 0
        self._closed = False
        self._warned_write = False
        self._warned_prune = False
        self.files_written = 0
        self.samples_written = 0
        self._name_res = [
            re.compile(rf"^[A-Za-z0-9_.-]+-\d{{8}}T\d{{6}}Z-\d+{re.escape(x)}$")
            for x in self.suffixes
        ]

    async def start(self, host: Host) -> None:
        prepare_directory(self.config.directory, self.id, dir_mode(self.config.file_mode))
        self.counters = host.counters
        self._batches.counters = host.counters
        self.log.info(
            "exporter started id=%s directory=%s file_mode=%04o",
            self.id,
            self.config.directory,
            self.config.file_mode,
        )

    async def export(self, item: ProfileSet | SymbolizedBatch) -> None:
        if self._closed:
            self.counters.add(self.id, "samples_dropped", batch_len(item))
            return
        if isinstance(item, ProfileSet):
            await self._write_set(item)
        else:
            await self._batches.add(item)

    async def flush(self) -> list[Path]:
        """Close windows of batches handed to ``export`` directly; the files written."""
        return [p for paths in await self._batches.flush() for p in paths]

    def files(self, ps: ProfileSet) -> dict[str, bytes | None]:
        """A window's files by suffix (None: not written). Runs in a worker thread, one
        window at a time and in order, so a subclass may keep state between windows."""
        assert self.encode is not None, "a subclass without `encode` overrides files()"
        return {self.suffix: self.encode(ps)}

    def encoded(self, ps: ProfileSet, files: dict[str, bytes | None]) -> None:
        """Called once a window is encoded, before it is written (worker thread)."""

    async def _write_set(self, ps: ProfileSet) -> list[Path]:
        async with self._lock:  # one writer: sequence numbers and pruning stay in order
            return await asyncio.to_thread(self._write_all, [ps])

    def _write_all(self, sets: list[ProfileSet]) -> list[Path]:
        written: list[Path] = []
        for ps in sets:
            count = ps.sample_count
            self.counters.add(self.id, "samples_dropped", ps.dropped_samples)
            try:
                files = self.files(ps)
            except Exception:  # a bug in an encoder: count the window, keep the exporter
                self.counters.add(self.id, "encode_errors")
                self.counters.add(self.id, "samples_dropped", count)
                self.log.exception("encoding failed id=%s samples=%d", self.id, count)
                continue
            self.encoded(ps, files)
            paths: list[Path] = []
            try:
                stem = self._free_stem(ps)
                for suffix, data in files.items():
                    if data is not None:
                        path = stem.with_name(stem.name + suffix)
                        write_atomically(path, data, self.config.file_mode)
                        paths.append(path)
            except OSError as e:
                written += paths
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
            written += paths
            self.files_written += len(paths)
            self.samples_written += count
            self.counters.add(self.id, "files_written", len(paths))
            self.counters.add(self.id, "samples_written", count)
        if written and self.config.max_files:
            self._prune()
        return written

    def _free_stem(self, ps: ProfileSet) -> Path:
        """The next ``<type>-<time>-<seq>`` that no file of any suffix uses yet (a previous
        run may have used it)."""
        while True:
            self._seq += 1
            stem = self.config.directory / file_name(ps.profile_type, ps.start_ns, self._seq, "")
            if not any(stem.with_name(stem.name + x).exists() for x in self.suffixes):
                return stem

    def _prune(self) -> None:
        d = self.config.directory
        try:
            for name_re in self._name_res:  # max_files counts the files of each suffix
                ours = [e for e in os.scandir(d) if e.is_file() and name_re.match(e.name)]
                ours.sort(key=lambda e: (e.stat().st_mtime_ns, e.name))
                for e in ours[: max(len(ours) - self.config.max_files, 0)]:
                    os.unlink(e.path)
                    self.counters.add(self.id, "files_deleted")
        except OSError as e:
            self.counters.add(self.id, "prune_errors")
            if not self._warned_prune:
                self._warned_prune = True
                self.log.warning(
                    "pruning old files failed id=%s error=%s (logged once; counted: prune_errors)",
                    self.id,
                    e,
                )

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._batches.shutdown()
        self.log.info(
            "exporter stopped id=%s directory=%s files_written=%d samples_written=%d "
            "samples_dropped=%d",
            self.id,
            self.config.directory,
            self.files_written,
            self.samples_written,
            self.counters.get(self.id, "samples_dropped"),
        )
