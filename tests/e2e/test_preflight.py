"""Clear failures when the machine cannot run BPF: no privileges, no tracefs.

These run the real CLI with a cpu pipeline in a restricted child: once with every
capability dropped (what a non-root user has), once in a private mount namespace where
tracefs is unmounted. Each must exit 3 with one line saying what to do.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.collector_run import ROOT
from tests.support.pipelines import profiles_yaml

pytestmark = pytest.mark.bpf


def collector_cmd(tmp_path: Path) -> list[str]:
    cfg = tmp_path / "p.yaml"
    cfg.write_text(
        profiles_yaml(tmp_path / "out", {"cpu": {}}, interval=None, metrics_address=None)
    )
    return [sys.executable, "-m", "collector.cli", "--config", str(cfg)]


def assert_one_clear_line(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode == 3, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("collector: cannot run here:")
    for n in needles:
        assert n in lines[0], lines[0]


def test_without_privileges(tmp_path: Path) -> None:
    cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *collector_cmd(tmp_path)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert_one_clear_line(res, "needs root", "CAP_BPF")


def test_without_tracefs(tmp_path: Path) -> None:
    inner = " ".join(shlex.quote(a) for a in collector_cmd(tmp_path))
    script = (
        "umount /sys/kernel/debug/tracing 2>/dev/null; umount /sys/kernel/debug 2>/dev/null; "
        "umount /sys/kernel/tracing 2>/dev/null; "
        f"exec {inner}"
    )
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert_one_clear_line(res, "tracefs is not mounted", "mount -t tracefs")
    # (debugfs goes too: it would automount tracefs again under debug/tracing.)
    # The host's tracefs is untouched.
    assert Path("/sys/kernel/tracing/events").is_dir()
