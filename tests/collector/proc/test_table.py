"""The process table against real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from collector.elf import ElfReader
from collector.proc import ProcessTable
from collector.proc import table as table_module
from collector.proc.procfs import container_id_from_cgroup, read_stat
from collector.telemetry import Counters

CID = "3f1c2e8a9b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e"


def _sleeper(path: str = "sleep") -> subprocess.Popen[bytes]:
    """A sleeping process, returned once its libraries are mapped (exec is asynchronous)."""
    p = subprocess.Popen([path, "30"])
    for _ in range(200):
        try:
            if "libc.so" in Path(f"/proc/{p.pid}/maps").read_text():
                return p
        except OSError:
            pass
        time.sleep(0.005)
    return p


def test_observe_snapshots_identity_and_executable_mappings() -> None:
    p = _sleeper()
    try:
        table = ProcessTable(Counters())
        snap = table.observe(p.pid)
        assert snap is not None
        assert snap.comm == "sleep"
        assert snap.exe_path == shutil.which("sleep") or os.path.realpath(
            shutil.which("sleep") or ""
        )
        assert snap.start_time == read_stat(p.pid)[1]  # type: ignore[index]
        assert snap.mappings and all(m.end > m.start for m in snap.mappings)
        assert any(m.path.endswith("libc.so.6") for m in snap.mappings)
        assert snap.exe_file is not None
        assert table.observe(p.pid) is snap  # known: no new snapshot
        assert table.lookup(p.pid) is snap
        assert table.lookup(p.pid, snap.since_ns - 1_000_000_000) is None  # before it started
        table.close()
    finally:
        p.kill()
        p.wait()


def test_pinned_binary_is_readable_after_exit_and_delete(tmp_path: Path) -> None:
    exe = tmp_path / "mysleep"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", exe)
    p = _sleeper(str(exe))
    table = ProcessTable(Counters(), grace_s=60)
    snap = table.observe(p.pid)
    p.kill()
    p.wait()
    table.exit(p.pid)
    exe.unlink()
    assert snap is not None and snap.exe_file is not None
    assert snap.ended_ns > 0
    fd = snap.exe_file.dup()
    try:
        assert ElfReader(fd).build_id()  # read through the pin, the path is gone
    finally:
        os.close(fd)
    assert table.lookup(p.pid) is snap  # kept for the grace period
    table.close()


def test_exited_snapshots_are_released_after_grace_and_caps_hold() -> None:
    counters = Counters()
    table = ProcessTable(counters, grace_s=0.0, max_processes=2, max_idle_pinned=0)
    procs = [_sleeper() for _ in range(3)]
    try:
        snaps = [table.observe(p.pid) for p in procs]
        assert table.stats()["snapshots"] == 2
        assert table.lookup(procs[0].pid) is None  # evicted, least recently observed
        assert counters.get("processes", "snapshots_evicted") == 1
        table.exit(procs[1].pid)
        table.exit(procs[2].pid)
        assert table.lookup(procs[2].pid) is None
        assert table.stats() == {"snapshots": 0, "pids": 0, "pinned_files": 0, "open_pins": 0}
        assert snaps[2] is not None and snaps[2].exe_file is not None
        assert snaps[2].exe_file.closed
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_exec_starts_a_new_snapshot() -> None:
    p = subprocess.Popen(["sh", "-c", "read x; exec sleep 30"], stdin=subprocess.PIPE)
    try:
        table = ProcessTable(Counters())
        before = table.observe(p.pid)
        assert before is not None and before.comm == "sh"
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.flush()
        for _ in range(100):
            st = read_stat(p.pid)
            if st and st[0] == "sleep":
                break
            time.sleep(0.01)
        after = table.exec(p.pid)
        assert after is not None and after.comm == "sleep"
        assert after.key != before.key and before.ended_ns
        assert table.lookup(p.pid, before.since_ns + 1) is before
        assert table.lookup(p.pid, after.since_ns) is after
        table.close()
    finally:
        p.kill()
        p.wait()


def test_container_id_layouts() -> None:
    assert container_id_from_cgroup(f"0::/docker/{CID}\n") == CID
    assert container_id_from_cgroup(f"0::/system.slice/docker-{CID}.scope\n") == CID
    kube = (
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/"
        f"cri-containerd-{CID}.scope"
    )
    assert container_id_from_cgroup(kube) == CID
    assert container_id_from_cgroup(f"0::/kubepods/besteffort/pod9/{CID}\n") == CID
    assert container_id_from_cgroup(f"0::/machine.slice/crio-{CID}.scope\n") == CID
    assert container_id_from_cgroup("0::/user.slice/session-1.scope\n") == ""


def test_a_file_stat_ed_a_moment_ago_is_pinned_again_without_a_stat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An exec storm maps the same libraries into every new process: within revalidate_s a
    file another snapshot stat-ed (and whose descriptor is held) costs no stat; after it, or
    once its pin is parked, it is stat-ed again."""
    stats: list[str] = []
    real = table_module.stat_regular

    def counting(ref: str) -> os.stat_result:
        stats.append(ref)
        return real(ref)

    monkeypatch.setattr(table_module, "stat_regular", counting)
    procs = [_sleeper() for _ in range(3)]
    table = ProcessTable(Counters(), revalidate_s=30.0)
    try:
        first = table.observe(procs[0].pid)
        assert first is not None and stats
        n = len(stats)
        second = table.observe(procs[1].pid)
        assert second is not None
        assert len(stats) == n  # every mapping known: the same pins, no stat
        assert [m.file for m in second.mappings] == [m.file for m in first.mappings]
        libc = next(m for m in second.mappings if m.path.endswith("libc.so.6"))
        assert libc.file is not None
        ident = libc.file.identity
        inode = ident[1]
        maps_dev = next(
            ln.dev for ln in table_module.procfs.read_maps(procs[1].pid) or [] if ln.inode == inode
        )
        assert table.verified_identity(maps_dev, inode) == ident  # what the unwind worker asks
        libc.file.park()  # a parked pin holds no descriptor: its inode number could be reused
        assert table.verified_identity(maps_dev, inode) is None
        third = table.observe(procs[2].pid)
        assert third is not None and len(stats) == n + 1  # libc alone is stat-ed again
        table.revalidate_s = 0.0  # past the window: every file is stat-ed again
        table.exec(procs[2].pid)
        assert len(stats) == n + 1 + len([m for m in third.mappings if m.file is not None])
    finally:
        table.close()
        for p in procs:
            p.kill()
            p.wait()


def test_samples_after_an_exec_whose_image_was_not_snapshotted_belong_to_no_snapshot() -> None:
    """The exec was read after the process had gone: its new image has no snapshot, and the
    old image's must not name the new one's samples (they would get another binary's names)."""
    p = _sleeper()
    table = ProcessTable(Counters())
    try:
        old = table.observe(p.pid)
        assert old is not None
    finally:
        p.kill()
        p.wait()
    at = time.time_ns()
    assert table.exec(p.pid, at) is None  # gone: no snapshot of the new image
    assert table.lookup(p.pid, at - 1) is old  # before the exec: the old image's
    assert table.lookup(p.pid, at) is None
    assert table.lookup(p.pid, at + 10**9) is None
    table.close()
