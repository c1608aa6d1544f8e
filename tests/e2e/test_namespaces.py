"""The collector next to a workload in PID namespaces, on the real kernel (issue #13).

Ground truth: cpu_shares burns 60/30/10 % of its CPU in burn_a/burn_b/burn_c.

- Sidecar: the collector and cpu_shares both run inside ``unshare --pid --fork --mount-proc``
  (what a pod with shareProcessNamespace is). The profile must name cpu_shares by its pid in
  there, with its functions at the right shares, and hold nothing from outside (host tasks
  are skipped and counted). The receivers' BPF programs report pids through bpf/pidns.h:
  without it BPF would hand over host pids, which /proc in the namespace does not have.
- DaemonSet: the collector on the host profiles cpu_shares inside such a namespace and in a
  cgroup named as docker names its containers: each sample carries the host pid, the pid
  inside (1: it is that namespace's init) and the container id; with the k8s processor and
  a kubelet stand-in on loopback whose pod list holds that container, the pod's names too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.deploy.support import Row, leaf_counts_of, pprof_rows
from tests.support.collector_run import ROOT, start_collector
from tests.support.pipelines import profiles_yaml
from tests.support.sampling import expected_samples, share_tolerance_pp
from tests.support.workloads import build

pytestmark = [pytest.mark.bpf, pytest.mark.slow]

TRUTH = {"burn_a": 60.0, "burn_b": 30.0, "burn_c": 10.0}
HZ = 199
SECONDS = "6"
CID = "7a5c3e1f9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e"
NEW_NS = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]


def write_config(tmp: Path, k8s_endpoint: str = "") -> tuple[Path, Path]:
    out = tmp / "out"
    processors: dict[str, dict[str, object]] = {"symbolize": {}}
    if k8s_endpoint:
        processors["k8s"] = {"endpoint": k8s_endpoint, "refresh_interval": 1}
    cfg = tmp / "pipeline.yaml"
    cfg.write_text(
        profiles_yaml(
            out, {"cpu": {"frequency": HZ}}, exporters=("folded", "pprof"), processors=processors
        )
    )
    return cfg, out


def leaf_shares(rows: list[Row], **want: object) -> tuple[dict[str, float], int]:
    counts = leaf_counts_of(rows, list(TRUTH), **want)
    n = sum(counts.values())
    return {fn: 100.0 * c / n if n else 0.0 for fn, c in counts.items()}, n


def assert_shares(shares: dict[str, float], n: int, cpu_s: float, context: object) -> None:
    assert n >= 0.8 * expected_samples(cpu_s, HZ), (n, cpu_s, context)
    for fn, truth in TRUTH.items():
        assert abs(shares[fn] - truth) <= share_tolerance_pp(truth, n), (shares, n, context)


def total(logs: str, component: str, name: str) -> int:
    m = re.search(rf"msg='totals component={component} [^']*\b{name}=(\d+)", logs)
    return int(m.group(1)) if m else 0


# ---- sidecar ---------------------------------------------------------------------------


def test_sidecar_profile_names_the_namespace_pid(tmp_path: Path) -> None:
    cfg, out = write_config(tmp_path)
    workload = build("cpu_shares")
    cmd = [*NEW_NS, sys.executable, "-m", "tests.e2e.namespace_driver", str(cfg)]
    res = subprocess.run(
        [*cmd, str(workload), SECONDS], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert res.returncode == 0, res.stderr
    run = json.loads(res.stdout.strip().splitlines()[-1])
    assert run["rc"] == 0 and run["workload_rc"] == 0, run["logs"]
    assert run["pid"] < 1000  # a pid of the new namespace (it counts from 1), not the host's
    rows = pprof_rows(out)
    # Only the namespace's tasks are profiled, so the one cpu_shares is the test's own.
    shares, n = leaf_shares(rows, comm="cpu_shares")
    assert_shares(shares, n, run["cpu_s"], run["logs"])
    # Every cpu_shares sample carries the pid the sidecar sees, and nothing else does:
    # no sample names a task that does not live in the namespace.
    assert {lb["pid"] for lb, _, _ in rows if lb.get("comm") == "cpu_shares"} == {run["pid"]}
    inside = set(run["tids"]) | {run["pid"]}
    strays = Counter(lb["tid"] for lb, _, _ in rows if lb["tid"] not in inside)
    assert sum(strays.values()) <= 0.01 * sum(c for _, _, c in rows), (strays, run["logs"])
    # The host's tasks were seen by BPF and skipped, and counted.
    assert total(run["logs"], "receivers/cpu", "pidns_outside") > 0, run["logs"]


# ---- DaemonSet -------------------------------------------------------------------------


def cgroup2_root() -> Path | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"]:
            return Path(left.split()[4])
    return None


def remove_cgroup(path: Path) -> None:
    for _ in range(500):
        pids = (path / "cgroup.procs").read_text().split()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)  # a namespace's init ignores other signals from outside
        time.sleep(0.01)
    for _ in range(500):
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.01)
    path.rmdir()


@pytest.fixture
def docker_cgroup() -> Iterator[Path]:
    root = cgroup2_root()
    if root is None:
        pytest.skip("no cgroup2 mount")
    path = root / f"docker-{CID}.scope"
    path.mkdir()
    yield path
    remove_cgroup(path)


class PodList(BaseHTTPRequestHandler):
    """The kubelet's GET /pods, with one pod whose container has the test's cgroup id."""

    body = json.dumps(
        {
            "kind": "PodList",
            "apiVersion": "v1",
            "items": [
                {
                    "metadata": {"name": "shares-0", "namespace": "bench", "uid": "u-1"},
                    "spec": {"nodeName": "node-a", "containers": [{"name": "burner"}]},
                    "status": {
                        "containerStatuses": [
                            {"name": "burner", "containerID": f"containerd://{CID}"}
                        ]
                    },
                }
            ],
        }
    ).encode()

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def kubelet() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), PodList)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/pods"
    server.shutdown()
    server.server_close()


def child_of(pid: int) -> int:
    """The process unshare --fork started (the namespace's pid 1), by its host pid."""
    for _ in range(500):
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if kids:
            return int(kids[0])
        time.sleep(0.01)
    raise AssertionError("unshare started nothing")


def test_daemonset_labels_both_pids_and_the_container(
    tmp_path: Path, docker_cgroup: Path, kubelet: str
) -> None:
    cfg, out = write_config(tmp_path, k8s_endpoint=kubelet)
    workload = build("cpu_shares")
    procs = docker_cgroup / "cgroup.procs"
    col = start_collector(cfg)
    try:
        p = subprocess.Popen(
            [*NEW_NS, str(workload), SECONDS], preexec_fn=lambda: procs.write_text("0")
        )
        host_pid = child_of(p.pid)
        _, status, usage = os.wait4(p.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        rc = col.stop()
    logs = col.logs()
    assert rc == 0, logs
    rows = pprof_rows(out)
    # The whole host is profiled (other tests may run a cpu_shares meanwhile): the test's
    # is the one with its pid. Only it and the unshare that started it are in its cgroup.
    in_cgroup = {lb["pid"] for lb, _, _ in rows if lb.get("container_id") == CID}
    assert in_cgroup <= {host_pid, p.pid}, (in_cgroup, host_pid, p.pid)
    mine = [lb for lb, _, _ in rows if lb["pid"] == host_pid and lb["comm"] == "cpu_shares"]
    assert mine, logs
    for labels in mine:
        assert labels["pid_namespaced"] == 1  # the namespace's init
        assert labels["container_id"] == CID
        assert labels["k8s.pod.name"] == "shares-0"
        assert labels["k8s.namespace.name"] == "bench"
        assert labels["k8s.container.name"] == "burner"
    # wait4 on unshare counts its child's CPU (the child is reaped inside the namespace).
    shares, n = leaf_shares(rows, pid=host_pid)
    assert_shares(shares, n, usage.ru_utime + usage.ru_stime, logs)
    assert total(logs, "processors/k8s", "refreshes") >= 1, logs
