"""Busy hosts (issue #16) under a low open-file limit, through the real collector CLI.

The collector runs with RLIMIT_NOFILE soft = hard = 64 (so raising the soft limit at start
gains nothing) while 80 processes of 80 distinct binaries (tests/workloads/busy_many.c built
with -DHOT=hot_<i>: each has its own hot function and build id) burn CPU. There are more
distinct binaries than descriptors: the pins are parked least recently used first and
reopened on demand, so every process's hot function must still be named, no batch may fail,
and the limit is said once in the log.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.deploy.support import pprof_rows
from tests.e2e.test_busy_host import totals
from tests.support.collector_run import RunningCollector
from tests.support.pipelines import profiles_yaml
from tests.support.workloads import build

pytestmark = [pytest.mark.bpf, pytest.mark.slow]

NOFILE = 64
BINARIES = 80


def _collector_with_nofile(
    cfg: Path, limit: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> RunningCollector:
    """The collector CLI started under ``prlimit --nofile=limit:limit``: the support code
    runs ``sys.executable -m collector.cli``, so the interpreter is wrapped for this test."""
    wrapper = tmp_path / "python-nofile"
    wrapper.write_text(f'#!/bin/sh\nexec prlimit --nofile={limit}:{limit} {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(wrapper))
    col = RunningCollector(cfg)
    monkeypatch.undo()
    col.wait_started()
    return col


def test_more_binaries_than_descriptors_are_all_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("prlimit") is None:
        pytest.skip("needs prlimit (util-linux)")
    bins = [build("busy_many", ("-O1", f"-DHOT=hot_{i}")) for i in range(BINARIES)]
    out = tmp_path / "out"
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(profiles_yaml(out, {"cpu": {"frequency": 199}}, exporters=("pprof",)))
    col = _collector_with_nofile(cfg, NOFILE, tmp_path, monkeypatch)
    try:
        limit = int(
            Path(f"/proc/{col.proc.pid}/limits").read_text().split("Max open files")[1].split()[0]
        )
        assert limit == NOFILE
        procs = [subprocess.Popen([str(b), "8"]) for b in bins]
        hot_of = {p.pid: f"hot_{i}" for i, p in enumerate(procs)}
        for p in procs:
            assert p.wait() == 0
    finally:
        rc = col.stop()
    logs = col.logs()
    assert rc == 0, logs
    assert "Traceback" not in logs, logs
    assert "batches_failed" not in logs and "level=error" not in logs, logs
    warnings = [ln for ln in logs.splitlines() if "level=warning" in ln]
    said = [ln for ln in logs.splitlines() if "open pinned files limited to" in ln]
    assert len(said) == 1, logs
    # That is the only warning: no unreadable binary, no reader error per binary.
    assert warnings == said, warnings
    per_pid: dict[int, Counter[str]] = defaultdict(Counter)
    for labels, frames, n in pprof_rows(out):
        pid = labels.get("pid")
        if pid in hot_of:
            per_pid[pid][frames[0] if frames else ""] += n  # type: ignore[index]
    assert set(per_pid) == set(hot_of), "processes without a sample"
    unnamed = {pid: dict(c) for pid, c in per_pid.items() if c[hot_of[pid]] == 0}
    counts = totals(logs, "processes")
    print("\n".join(warnings), counts)
    assert not unnamed, (unnamed, counts)
    assert counts.get("pin_parked", 0) > 0 and counts.get("pin_reopened", 0) > 0, counts
