"""collector.bpf.targets on real processes: a binary's processes by device and inode, a file
that appears after the start, and the config types every BPF receiver's settings share."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from collector.bpf.targets import BinaryTarget, Pids, RingbufPages, exe_id


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    binary = tmp_path / "my_sleep"
    shutil.copy("/bin/sleep", binary)
    proc = subprocess.Popen([str(binary), "30"])
    yield binary, proc
    proc.kill()
    proc.wait()


def test_processes_of_a_binary_are_found_by_its_inode_whatever_path_started_them(
    tmp_path: Path, sleeper: tuple[Path, subprocess.Popen[bytes]]
) -> None:
    binary, proc = sleeper
    link = tmp_path / "link"
    link.symlink_to(binary)
    other = subprocess.Popen(["/bin/sleep", "30"])  # same program, another file
    via_link = subprocess.Popen([str(link), "30"])
    try:
        target = BinaryTarget(str(binary))
        assert target.key == exe_id(str(binary)) == exe_id(proc.pid)
        assert sorted(target.running()) == sorted([proc.pid, via_link.pid])
        assert target.runs(proc.pid) and target.runs(via_link.pid)
        assert not target.runs(other.pid)
        assert not target.runs(2**22 + 1)  # no such process
    finally:
        for p in (other, via_link):
            p.kill()
            p.wait()


def test_a_binary_created_after_the_start_is_looked_up_again(tmp_path: Path) -> None:
    binary = tmp_path / "later"
    target = BinaryTarget(str(binary))
    assert target.key is None and target.running() == []
    shutil.copy("/bin/sleep", binary)
    proc = subprocess.Popen([str(binary), "30"])
    try:
        assert target.runs(proc.pid)
        assert target.key == exe_id(proc.pid)
        assert target.running() == [proc.pid]
    finally:
        proc.kill()
        proc.wait()


def test_a_deleted_binary_matches_no_process_by_its_old_path(
    sleeper: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    binary, proc = sleeper
    binary.unlink()  # /proc/<pid>/exe now reads "<path> (deleted)"
    target = BinaryTarget(str(binary))
    assert target.key is None
    assert not target.runs(proc.pid)
    assert target.running() == []


class _Settings(BaseModel):
    pids: Pids = []
    ringbuf_pages: RingbufPages = 64


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"pids": [1, 0]}, "pids must be positive process ids"),
        ({"pids": [-5]}, "pids must be positive process ids"),
        ({"ringbuf_pages": 96}, "ringbuf_pages must be a power of two, got 96"),
        ({"ringbuf_pages": 0}, "greater than or equal to 1"),
        ({"ringbuf_pages": 1 << 17}, "less than or equal to 65536"),
    ],
)
def test_config_types_refuse_with_one_clear_message(value: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _Settings.model_validate(value)


def test_config_types_accept_what_is_valid() -> None:
    s = _Settings.model_validate({"pids": [1, 4_000_000], "ringbuf_pages": 1 << 16})
    assert s.pids == [1, 4_000_000] and s.ringbuf_pages == 65536
