"""The process table against real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from collector.elf import ElfReader
from collector.proc import ProcessTable
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
