"""Container ids from cgroup paths and pids from NSpid: files in testdata, then real processes.

testdata/cgroup/*.txt are /proc/<pid>/cgroup texts in the layouts docker, containerd
(Kubernetes and nerdctl), CRI-O and podman write under cgroup v1, v2 and hybrid hosts, with
the expected id of each in expected.json. testdata/status-*.txt were recorded on this machine
from a process on the host, one in ``unshare --pid`` and one two namespaces down.
The last tests make real cgroups named as docker names them and move a real process in.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.proc import ProcessTable
from collector.proc.procfs import (
    container_id_from_cgroup,
    is_kernel_thread,
    parse_nspid,
    read_container_id,
    read_nspid,
)
from collector.telemetry import Counters

DATA = Path(__file__).parent / "testdata"
EXPECTED: dict[str, str] = json.loads((DATA / "cgroup" / "expected.json").read_text())
CID = "5c1d9e0f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recorded_cgroup_layouts(name: str) -> None:
    text = (DATA / "cgroup" / f"{name}.txt").read_text()
    assert container_id_from_cgroup(text) == EXPECTED[name]


def test_every_runtime_is_covered() -> None:
    prefixes = {n.split("-")[0] for n, cid in EXPECTED.items() if cid}
    assert {"docker", "containerd", "crio", "podman"} <= prefixes
    assert any("-v1" in n and EXPECTED[n] for n in EXPECTED)
    assert any("-v2" in n and EXPECTED[n] for n in EXPECTED)


def test_garbage_is_no_id() -> None:
    for text in ("", "\n\n", "no colons", "0:", "::", "0::" + "/" * 500, "x" * 10_000):
        assert container_id_from_cgroup(text) == ""


def test_nspid_of_recorded_status_files() -> None:
    assert parse_nspid((DATA / "status-host.txt").read_bytes()) == (540,)
    assert parse_nspid((DATA / "status-in-pidns.txt").read_bytes()) == (529, 1)
    assert parse_nspid((DATA / "status-nested-twice.txt").read_bytes()) == (595, 3, 2)


def test_nspid_that_does_not_parse_is_empty() -> None:
    assert parse_nspid(b"Name:\tx\n") == ()  # kernels before 4.1 have no NSpid line
    assert parse_nspid(b"NSpid:\n") == ()
    assert parse_nspid(b"NSpid:\t12\tx\n") == ()
    assert read_nspid(2**22 + 12345) == ()  # no such process (above pid_max)


def test_kthreadd_is_a_kernel_thread() -> None:
    assert is_kernel_thread(2)  # kthreadd: what tells the host's /proc apart
    assert not is_kernel_thread(os.getpid())


# ---- real processes -------------------------------------------------------------------


def _cgroup2_root() -> Path | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"]:
            return Path(left.split()[4])
    return None


def _cgroup_v1_root(controller: str) -> Path | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields = right.split()
        if fields[:1] == ["cgroup"] and controller in fields[-1].split(","):
            return Path(left.split()[4])
    return None


def moved_sleeper(cgroup: Path, prefix: list[str]) -> subprocess.Popen[bytes]:
    """``prefix sleep 30`` started inside ``cgroup`` (it writes itself in before exec)."""
    procs = cgroup / "cgroup.procs"

    def enter() -> None:
        procs.write_text("0")  # "0": the writing process itself

    return subprocess.Popen([*prefix, "sleep", "30"], preexec_fn=enter)


def _sleep_pid(p: subprocess.Popen[bytes]) -> int:
    """The sleep's host pid: p itself, or the child unshare forked."""
    for _ in range(500):
        try:
            kids = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
            comm = Path(f"/proc/{p.pid}/comm").read_text().strip()
        except OSError:
            break
        if comm == "sleep":
            return p.pid
        if kids and Path(f"/proc/{kids[0]}/comm").read_text().strip() == "sleep":
            return int(kids[0])
        time.sleep(0.01)
    raise AssertionError("sleep did not start")


def remove_cgroup(path: Path) -> None:
    """SIGKILL whatever is still in it (a namespace's pid 1 ignores other signals from
    outside), then remove it once the kernel has emptied it."""
    for _ in range(500):
        pids = (path / "cgroup.procs").read_text().split()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        time.sleep(0.01)
    for _ in range(500):
        try:
            path.rmdir()
            return
        except OSError:  # EBUSY until the last task is reaped
            time.sleep(0.01)
    path.rmdir()


@pytest.fixture
def docker_scope() -> Iterator[Path]:
    root = _cgroup2_root()
    if os.geteuid() != 0 or root is None:
        pytest.skip("needs root and a cgroup2 mount")
    path = root / f"docker-{CID}.scope"
    path.mkdir()
    yield path
    remove_cgroup(path)


def test_real_process_in_a_docker_named_cgroup_v2(docker_scope: Path) -> None:
    p = moved_sleeper(docker_scope, ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"])
    try:
        pid = _sleep_pid(p)
        assert read_container_id(pid) == CID
        table = ProcessTable(Counters())
        snap = table.observe(pid)
        assert snap is not None
        assert snap.container_id == CID
        assert snap.nspid == (pid, 1) and snap.pid_namespaced == 1
        table.close()
    finally:
        p.kill()
        p.wait()


def test_real_process_in_a_docker_named_cgroup_v1() -> None:
    root = _cgroup_v1_root("pids")
    if os.geteuid() != 0 or root is None:
        pytest.skip("needs root and a cgroup v1 pids hierarchy (hybrid or v1 host)")
    parent = root / "docker"
    made_parent = not parent.exists()
    parent.mkdir(exist_ok=True)
    path = parent / CID
    path.mkdir()
    p = moved_sleeper(path, [])
    try:
        pid = _sleep_pid(p)
        assert read_container_id(pid) == CID
        assert read_nspid(pid) == (pid,)  # a container by cgroup, not by PID namespace
    finally:
        p.kill()
        p.wait()
        remove_cgroup(path)
        if made_parent:
            parent.rmdir()


def test_seen_from_a_private_cgroup_namespace(docker_scope: Path) -> None:
    # A containerized collector (cgroup v2 gives each container its own cgroup namespace)
    # sees other cgroups' paths relative to its root, "/../<...>": the id is still there.
    reader = docker_scope.parent / "collector-reader-test"
    reader.mkdir()
    p = moved_sleeper(docker_scope, [])
    try:
        pid = _sleep_pid(p)
        script = f"echo $$ > {reader}/cgroup.procs && exec unshare --cgroup cat /proc/{pid}/cgroup"
        text = subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout
        assert f"0::/../docker-{CID}.scope" in text, text
        assert container_id_from_cgroup(text) == CID
    finally:
        p.kill()
        p.wait()
        remove_cgroup(reader)
