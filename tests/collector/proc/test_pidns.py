"""PID namespaces: what collector.proc.pidns computes, and bpf/pidns.h on the real kernel.

The BPF half runs bpf/pidns_selftest.bpf.c through the real loader twice: from the host's
namespace (no translation: every task keeps its host pid, a containerized one too) and from
inside ``unshare --pid --fork --mount-proc`` (translation: the probe's own child is named by
its pid in there, checked against the child itself and against NSpid read from the host; a
task on the host is reported as outside, never under some other pid).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from collector.proc.pidns import INIT_PID_NS_INO, PidNamespace, kernel_dev, proc_namespace
from collector.proc.procfs import read_nspid
from tests.support.collector_run import ROOT

PROBE = [sys.executable, "-m", "tests.collector.proc.pidns_probe"]
NEW_NS = ["unshare", "--pid", "--fork", "--mount-proc"]


def ns_inode(link: str) -> int:
    target = os.readlink(link)  # "pid:[4026531836]"
    return int(target[target.index("[") + 1 : -1])


def run_in(prefix: list[str], code: str) -> dict:
    out = subprocess.run(
        [*prefix, sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    return json.loads(out)


SHOW_NS = (
    "import json; from collector.proc.pidns import proc_namespace as p; n = p(); "
    "print(json.dumps({'ino': n.ino, 'dev': n.dev, 'defines': n.defines()}))"
)


def test_kernel_dev_encoding() -> None:
    # stat's st_dev puts the minor's low byte first; the kernel keeps major << 20 | minor.
    assert kernel_dev(os.makedev(0, 4)) == 4
    assert kernel_dev(os.makedev(8, 1)) == (8 << 20) | 1
    assert kernel_dev(os.makedev(259, 70000)) == (259 << 20) | 70000


def test_host_namespace_needs_no_translation() -> None:
    ns = proc_namespace()
    assert ns.ino == ns_inode("/proc/self/ns/pid")
    assert ns.initial and ns.ino == INIT_PID_NS_INO  # this machine's tests run on the host
    assert ns.defines() == {"PIDNS_TRANSLATE": 0}
    other = PidNamespace(dev=4, ino=4026532999)
    assert other.defines() == {"PIDNS_TRANSLATE": 1, "PIDNS_DEV": 4, "PIDNS_INO": 4026532999}


@pytest.mark.skipif(os.geteuid() != 0, reason="unshare --pid needs root")
def test_new_namespace_is_detected() -> None:
    got = run_in(NEW_NS, SHOW_NS)
    assert got["ino"] != INIT_PID_NS_INO
    want = {"PIDNS_TRANSLATE": 1, "PIDNS_DEV": got["dev"], "PIDNS_INO": got["ino"]}
    assert got["defines"] == want
    assert got["dev"] == kernel_dev(os.stat("/proc/self/ns/pid").st_dev)  # one nsfs for all


@pytest.mark.skipif(os.geteuid() != 0, reason="unshare --pid needs root")
def test_without_its_own_proc_the_procs_namespace_counts() -> None:
    # unshare without --mount-proc: the process is in a new namespace but reads the host's
    # /proc, so pids must stay host pids (what that /proc is indexed by).
    got = run_in(["unshare", "--pid", "--fork"], SHOW_NS)
    assert got["ino"] == INIT_PID_NS_INO and got["defines"] == {"PIDNS_TRANSLATE": 0}


class Probe:
    """pidns_probe.py running under ``prefix`` (nothing, or a new PID namespace)."""

    def __init__(self, prefix: list[str], comm: str, program: Path) -> None:
        self.proc = subprocess.Popen(
            [*prefix, *PROBE, comm, str(program)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def step(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            assert self.proc.stderr is not None
            raise AssertionError(f"probe exited {self.proc.returncode}: {self.proc.stderr.read()}")
        return json.loads(line)

    def go(self) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        out = self.step()
        assert self.proc.wait(60) == 0
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def sleeper(tmp_path: Path) -> Path:
    """A copy of sleep under a name (= comm) no other test execs."""
    path = tmp_path / f"pns{os.getpid() % 100000}"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", path)
    return path


@pytest.mark.bpf
def test_from_the_host_namespace_every_task_keeps_its_host_pid(sleeper: Path) -> None:
    probe = Probe([], sleeper.name, sleeper)
    try:
        inside = probe.step()
        assert inside["defines"] == {"PIDNS_TRANSLATE": 0}
        (ev,) = inside["events"]
        assert ev["inside"] == 1
        assert ev["ns_tgid"] == ev["host_tgid"] == ev["ns_pid"] == inside["child_pid"]
        # A task in a container is still named, by its host pid: the host's /proc has it.
        subprocess.run([*NEW_NS, str(sleeper), "0"], check=True)
        outside = probe.go()
    finally:
        probe.kill()
    (ev,) = outside["events"]
    assert ev["inside"] == 1 and ev["ns_tgid"] == ev["host_tgid"] and ev["ns_tgid"] > 1
    assert outside["counters"] == [2, 0]  # two execs matched, none outside


@pytest.mark.bpf
def test_inside_a_new_namespace_pids_are_that_namespaces(sleeper: Path) -> None:
    probe = Probe(NEW_NS, sleeper.name, sleeper)
    try:
        inside = probe.step()
        d = inside["defines"]
        assert d["PIDNS_TRANSLATE"] == 1 and d["PIDNS_INO"] != INIT_PID_NS_INO
        (ev,) = inside["events"]
        assert ev["inside"] == 1
        # Named as the probe (and the child's own getpid) see it...
        assert ev["ns_tgid"] == ev["ns_pid"] == inside["child_pid"]
        # ...which is not its host pid; the host's NSpid line links the two.
        assert ev["host_tgid"] != ev["ns_tgid"]
        assert read_nspid(ev["host_tgid"]) == (ev["host_tgid"], ev["ns_tgid"])
        assert ns_inode(f"/proc/{ev['host_tgid']}/ns/pid") == d["PIDNS_INO"]
        # A host task is not visible from in there: reported as outside, with no pid at all.
        subprocess.run([str(sleeper), "0"], check=True)
        outside = probe.go()
    finally:
        probe.kill()
    (ev,) = outside["events"]
    assert ev["inside"] == 0 and ev["ns_tgid"] == ev["ns_pid"] == 0
    assert ev["host_tgid"] > 0
    assert outside["counters"] == [2, 1]
