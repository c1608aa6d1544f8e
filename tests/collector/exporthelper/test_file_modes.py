"""Profiles name every process's binaries and stacks: files are 0600 and the folders the
exporter creates 0700 unless ``file_mode`` says otherwise, whatever the umask."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from collector.component import CreateSettings
from collector.exporthelper import (
    FileExporterConfig,
    PeriodicFileExporter,
    dir_mode,
    write_atomically,
)
from collector.host import Host
from tests.support.encoding_samples import CPU, profile_set


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture(params=[0o000, 0o022, 0o077], ids=lambda u: f"umask{u:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _enc(ps: object) -> bytes:
    return b"profile\n"


def _write_one(directory: Path, **cfg: object) -> Path:
    config = FileExporterConfig(directory=directory, interval=3600, **cfg)
    e = PeriodicFileExporter(CreateSettings("t", logging.getLogger("t")), config, _enc, ".txt")

    async def run() -> None:
        await e.start(Host())
        await e.export(profile_set(CPU))
        await e.shutdown()

    asyncio.run(run())
    (path,) = directory.glob("*.txt")
    return path


def test_default_is_owner_only_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    path = _write_one(tmp_path / "a" / "b")
    assert _mode(path) == 0o600
    assert _mode(tmp_path / "a" / "b") == 0o700
    assert _mode(tmp_path / "a") == 0o700  # every folder the exporter created


@pytest.mark.parametrize(
    ("setting", "file_mode", "folder_mode"),
    [("0640", 0o640, 0o750), (0o640, 0o640, 0o750), ("0o660", 0o660, 0o770), ("644", 0o644, 0o755)],
)
def test_file_mode_opens_files_to_a_group(
    tmp_path: Path, umask: int, setting: object, file_mode: int, folder_mode: int
) -> None:
    path = _write_one(tmp_path / "out", file_mode=setting)
    assert _mode(path) == file_mode
    assert _mode(tmp_path / "out") == folder_mode


def test_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(out, 0o751)
    path = _write_one(out)
    assert _mode(out) == 0o751 and _mode(path) == 0o600


def test_a_stale_temporary_or_a_symlink_never_widens_access(tmp_path: Path) -> None:
    stale = tmp_path / ".p.txt.tmp"
    stale.write_bytes(b"old")
    os.chmod(stale, 0o666)
    write_atomically(tmp_path / "p.txt", b"new")
    assert (tmp_path / "p.txt").read_bytes() == b"new" and _mode(tmp_path / "p.txt") == 0o600
    target = tmp_path / "elsewhere"
    target.write_bytes(b"keep")
    (tmp_path / ".q.txt.tmp").symlink_to(target)
    with pytest.raises(OSError):
        write_atomically(tmp_path / "q.txt", b"x")
    assert target.read_bytes() == b"keep" and not (tmp_path / "q.txt").exists()


@pytest.mark.parametrize("bad", ["0999", "rw-r-----", "", 640, 0o1777, -1])
def test_bad_modes_are_refused_naming_the_field(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValidationError, match="file_mode"):
        FileExporterConfig(directory=tmp_path, file_mode=bad)


def test_folder_modes_follow_the_file_mode() -> None:
    assert [dir_mode(m) for m in (0o600, 0o640, 0o604, 0o660, 0o644, 0o400)] == [
        0o700,
        0o750,
        0o705,
        0o770,
        0o755,
        0o700,
    ]
