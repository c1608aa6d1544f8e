"""The collector as a non-root user with only the documented capabilities, on the real kernel.

Two ways deploy/ grants them, each run against cpu_shares (60/30/10 % of its CPU in
burn_a/burn_b/burn_c), which runs as root, so every /proc read of it crosses users:
- ambient capabilities (what the systemd unit's AmbientCapabilities= does), via setpriv;
- file capabilities on a copy of the interpreter (what the container image does), exec'd
  by a user who holds no capability at all.
Without them the collector refuses with exit 3 and one line naming each missing one.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.support import (
    NOBODY,
    Collector,
    leaf_counts,
    leaf_counts_of,
    pipeline,
    pprof_rows,
    run_workload,
    shadow_venv,
    world_dir,
)
from tests.support.folded import read_folded
from tests.support.sampling import expected_samples, share_tolerance_pp
from tests.support.workloads import build

pytestmark = [pytest.mark.bpf, pytest.mark.slow]

TRUTH = {"burn_a": 60.0, "burn_b": 30.0, "burn_c": 10.0}
# deploy/README.md's list (CAP_SYSLOG is optional: kernel symbol names).
DOCUMENTED = "bpf,perfmon,sys_ptrace,checkpoint_restore,dac_read_search,syslog"
HZ = 199


def caps(spec: str) -> str:
    """setpriv's syntax: drop everything, then add these."""
    return ",".join(["-all", *(f"+{c}" for c in spec.split(",") if c)])


def as_nobody(spec: str) -> list[str]:
    c = caps(spec)
    return [
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        f"--inh-caps={c}",
        f"--ambient-caps={c}",
        f"--bounding-set={c}",
    ]


def profile(prefix: list[str], python: Path, where: Path) -> tuple[dict[str, int], float, str]:
    cfg, out = pipeline(where, HZ, owner=NOBODY)
    col = Collector(prefix, python, cfg, where / "collector.log")
    try:
        col.wait_started()
        pid, cpu_s = run_workload([str(build("cpu_shares")), "5"])
    finally:
        rc = col.stop()
    logs = col.stderr()
    assert rc == 0, logs
    counts = leaf_counts_of(pprof_rows(out), list(TRUTH), pid=pid, comm="cpu_shares")
    # The folded file names the same functions (it has no pids to tell runs apart).
    assert set(leaf_counts(read_folded(out), "cpu_shares", list(TRUTH)).values()) != {0}
    return counts, cpu_s, logs


def assert_profiled(counts: dict[str, int], cpu_s: float, logs: str) -> None:
    n = sum(counts.values())
    # Named functions at all means /proc/PID/maps and map_files of root's process were read.
    assert n >= 0.8 * expected_samples(cpu_s, HZ), (counts, cpu_s, logs)
    for fn, truth in TRUTH.items():
        got = 100.0 * counts[fn] / n
        assert abs(got - truth) <= share_tolerance_pp(truth, n), (counts, logs)
    # (pin_failed may still be counted: processes elsewhere on the machine that exit between
    # their maps and map_files reads. The named burn_* frames show cpu_shares was pinned.)


def test_ambient_capabilities_only() -> None:
    where = world_dir("collector-caps-")
    try:
        py = shadow_venv(where)
        counts, cpu_s, logs = profile(as_nobody(DOCUMENTED), py, where)
        assert "capabilities have=CAP_DAC_READ_SEARCH,CAP_SYS_PTRACE,CAP_SYSLOG" in logs
        assert "CAP_SYS_ADMIN" not in logs.split("capabilities have=")[1].split()[0]
        assert_profiled(counts, cpu_s, logs)
    finally:
        shutil.rmtree(where)


def test_file_capabilities_on_the_interpreter() -> None:
    where = world_dir("collector-filecaps-")
    try:
        py = shadow_venv(where, copy=True)
        cap_list = ",".join(f"cap_{c}" for c in DOCUMENTED.split(","))
        subprocess.run(["setcap", f"{cap_list}+ep", str(py)], check=True)
        # A user without any capability: what it has comes from the file at exec.
        bounding = caps(DOCUMENTED)
        prefix = [
            "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            "--inh-caps=-all",
            f"--bounding-set={bounding}",
        ]
        counts, cpu_s, logs = profile(prefix, py, where)
        assert_profiled(counts, cpu_s, logs)
    finally:
        shutil.rmtree(where)


@pytest.mark.parametrize(
    ("granted", "missing"),
    [
        ("", ["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_CHECKPOINT_RESTORE"]),
        ("bpf,perfmon", ["CAP_SYS_PTRACE", "CAP_CHECKPOINT_RESTORE", "CAP_DAC_READ_SEARCH"]),
        ("bpf,perfmon,sys_ptrace,checkpoint_restore", ["CAP_DAC_READ_SEARCH"]),
    ],
)
def test_without_them_one_line_lists_what_is_missing(granted: str, missing: list[str]) -> None:
    where = world_dir("collector-nocaps-")
    try:
        py = shadow_venv(where)
        cfg, _ = pipeline(where, owner=NOBODY)
        cmd = [*as_nobody(granted), str(py), "-m", "collector.cli", "--config", str(cfg)]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=where)
        assert res.returncode == 3, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("collector: cannot run here:"), lines
        for name in missing:
            assert name in lines[0], lines[0]
        for name in granted.split(","):
            if name:
                assert f"CAP_{name.upper()} (" not in lines[0], lines[0]
    finally:
        shutil.rmtree(where)
