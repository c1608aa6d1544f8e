"""The periodic file exporter on a real event loop, writing into a real directory."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import pytest

from collector.component import CreateSettings
from collector.errors import EnvironmentProblem
from collector.exporthelper import (
    FileExporterConfig,
    PeriodicFileExporter,
    file_name,
    prepare_directory,
    write_atomically,
)
from collector.host import Host
from collector.model import ProfileSet
from tests.support.encoding_samples import CPU, OFF_CPU, batch, profile_set

ID = "test_exporter"


def _encode(ps: ProfileSet) -> bytes:
    return f"{ps.profile_type.name} {ps.sample_count}\n".encode()


def _exporter(tmp_path: Path, **cfg: object) -> PeriodicFileExporter:
    config = FileExporterConfig(directory=tmp_path / "out", **cfg)
    return PeriodicFileExporter(CreateSettings(ID, logging.getLogger(ID)), config, _encode, ".txt")


def _files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "out").glob("*.txt"))


def test_file_name_has_type_utc_time_and_sequence() -> None:
    assert file_name(CPU, 1_763_800_000_000_000_000, 3, ".folded") == (
        "cpu-20251122T082640Z-000003.folded"
    )


def test_atomic_write_leaves_no_temporary(tmp_path: Path) -> None:
    write_atomically(tmp_path / "a.folded", b"x 1\n")
    assert [p.name for p in tmp_path.iterdir()] == ["a.folded"]


def test_unwritable_directory_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(EnvironmentProblem, match=r"my/id: directory .*file/sub is not writable"):
        prepare_directory(tmp_path / "file" / "sub", "my/id")
    with pytest.raises(EnvironmentProblem, match="/proc/sys/profiles"):
        prepare_directory(Path("/proc/sys/profiles"), "my/id")


def test_interval_flush_then_shutdown_flush(tmp_path: Path) -> None:
    async def run() -> tuple[list[str], list[str], Host]:
        host = Host()
        e = _exporter(tmp_path, interval="200ms")
        await e.start(host)
        await e.export(batch(CPU))
        deadline = time.monotonic() + 5
        while not _files(tmp_path) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        first = [p.read_text() for p in _files(tmp_path)]
        await e.export(batch(CPU, scale=2))
        await e.shutdown()
        await e.shutdown()  # idempotent
        return first, [p.read_text() for p in _files(tmp_path)], host

    first, after, host = asyncio.run(run())
    assert first == ["cpu 15\n"]
    assert sorted(after) == ["cpu 15\n", "cpu 30\n"]
    assert host.counters.get(ID, "files_written") == 2
    assert host.counters.get(ID, "samples_written") == 45
    assert not list((tmp_path / "out").glob(".*"))  # no temporaries left behind


def test_profile_types_never_share_a_file_and_empty_windows_write_nothing(tmp_path: Path) -> None:
    async def run() -> None:
        e = _exporter(tmp_path, interval=3600)
        await e.start(Host())
        assert await e.flush() == []
        await e.export(batch(CPU))
        await e.export(batch(OFF_CPU, value=10))
        await e.export(batch(CPU))
        await e.shutdown()

    asyncio.run(run())
    names = {p.name.split("-")[0]: p.read_text() for p in _files(tmp_path)}
    assert names == {"cpu": "cpu 30\n", "off_cpu": "off_cpu 15\n"}


def test_a_full_window_closes_early_and_late_batches_are_counted(tmp_path: Path) -> None:
    async def run() -> Host:
        host = Host()
        e = _exporter(tmp_path, interval=3600, max_samples=10)
        await e.start(host)
        await e.export(batch(CPU))  # 15 samples: a full window of 10 is written at once
        assert [p.read_text() for p in _files(tmp_path)] == ["cpu 10\n"]
        await e.shutdown()  # the other 5 are written at shutdown: nothing is dropped
        await e.export(batch(CPU))  # after shutdown: dropped, counted
        await e.export(profile_set(CPU))  # the same for a ProfileSet
        return host

    host = asyncio.run(run())
    assert sorted(p.read_text() for p in _files(tmp_path)) == ["cpu 10\n", "cpu 5\n"]
    assert host.counters.get(ID, "samples_written") == 15
    assert host.counters.get(ID, "samples_dropped") == 15 + 15
    assert host.counters.get(ID, "windows_closed_full") == 1


def test_max_files_deletes_the_oldest(tmp_path: Path) -> None:
    async def run() -> None:
        e = _exporter(tmp_path, interval=3600, max_files=2)
        await e.start(Host())
        for scale in (1, 2, 3):
            await e.export(batch(CPU, scale=scale))
            await e.flush()
        await e.shutdown()

    asyncio.run(run())
    assert [p.read_text() for p in _files(tmp_path)] == ["cpu 30\n", "cpu 45\n"]


def test_shutdown_without_start_is_safe(tmp_path: Path) -> None:
    asyncio.run(_exporter(tmp_path).shutdown())
    assert not (tmp_path / "out").exists()


def test_encoding_runs_off_the_event_loop(tmp_path: Path) -> None:
    """The encoder runs in a worker thread while the loop keeps turning (how long the loop
    may stall is a speed figure: benchmarks/dedup.py)."""
    threads: list[int] = []
    release = threading.Event()

    def slow(ps: ProfileSet) -> bytes:
        threads.append(threading.get_ident())
        release.wait(30)  # holds the encoder until the loop proves it still runs
        return b"x"

    async def run() -> tuple[int, int]:
        config = FileExporterConfig(directory=tmp_path / "out", interval=3600)
        e = PeriodicFileExporter(CreateSettings(ID, logging.getLogger(ID)), config, slow, ".txt")
        await e.start(Host())
        write = asyncio.create_task(e.export(profile_set(CPU)))
        ticks = 0
        while not threads:  # the encoder has started and is blocked
            await asyncio.sleep(0.001)
        for _ in range(5):  # ...and the loop still turns
            await asyncio.sleep(0)
            ticks += 1
        release.set()
        await write
        await e.shutdown()
        return ticks, threading.get_ident()

    ticks, loop_thread = asyncio.run(run())
    assert ticks == 5 and threads and threads[0] != loop_thread
    assert [p.read_bytes() for p in _files(tmp_path)] == [b"x"]


def test_exporting_a_profile_set_writes_it_as_is(tmp_path: Path) -> None:
    ps = profile_set(CPU, scale=2)

    async def run() -> Host:
        host = Host()
        e = _exporter(tmp_path, interval=3600)
        await e.start(host)
        await e.export(ps)
        await e.shutdown()
        return host

    host = asyncio.run(run())
    (path,) = _files(tmp_path)
    assert path.read_text() == "cpu 30\n"
    assert path.name == file_name(CPU, ps.start_ns, 1, ".txt")
    assert host.counters.get(ID, "files_written") == 1


def test_a_failed_prune_is_counted_and_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Root can delete nearly anything, so the failure is injected at os.unlink."""
    import collector.exporthelper.periodic as periodic

    def refuse(path: object) -> None:
        raise PermissionError(1, "Operation not permitted", str(path))

    async def run() -> Host:
        host = Host()
        e = _exporter(tmp_path, interval=3600, max_files=1)
        await e.start(host)
        monkeypatch.setattr(periodic.os, "unlink", refuse)
        for scale in (1, 2, 3):
            await e.export(batch(CPU, scale=scale))
            await e.flush()
        monkeypatch.undo()
        await e.shutdown()
        return host

    with caplog.at_level(logging.WARNING):
        host = asyncio.run(run())
    assert len(_files(tmp_path)) == 3  # nothing deleted, nothing lost
    assert host.counters.get(ID, "prune_errors") == 2
    assert sum("pruning old files failed" in r.getMessage() for r in caplog.records) == 1
