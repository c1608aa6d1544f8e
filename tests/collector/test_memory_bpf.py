"""The real CLI on the default pipeline (config/pipeline.yaml) with its BPF program loaded:
bcc, clang and LLVM live only in the loader child, the network libraries of exporters that are
not configured are never mapped, malloc is tuned, and trims are counted in the totals."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from collector import memory
from tests.support.collector_run import ROOT, start_collector

pytestmark = pytest.mark.bpf

# Shared objects that must not be in the long-running process's address space.
NOT_MAPPED = {
    "bcc": re.compile(r"libbcc"),
    "clang/LLVM": re.compile(r"libclang|libLLVM"),
    "grpc": re.compile(r"cygrpc"),
    "protobuf (upb)": re.compile(r"_upb/_message"),
}


def test_default_pipeline_maps_no_bcc_llvm_grpc_or_protobuf(tmp_path: Path) -> None:
    extra = tmp_path / "extra.yaml"
    # No metrics port: several collectors may run on this machine at once.
    extra.write_text("service:\n  telemetry:\n    metrics:\n      address: none\n")
    col = start_collector(
        ROOT / "config" / "pipeline.yaml", extra, env={"PROFILES_DIR": str(tmp_path / "out")}
    )
    try:
        libs = {r.name for r in memory.regions(col.proc.pid)}
        maps = Path(f"/proc/{col.proc.pid}/maps").read_text()
        time.sleep(memory.TRIM_INTERVAL + 1)  # one periodic trim, to see it counted
    finally:
        rc = col.stop()
    assert rc == 0, col.stderr()
    assert any("libpython" in n or "python3" in n for n in libs)  # the reading itself works
    found = {what: bool(rx.search(maps)) for what, rx in NOT_MAPPED.items()}
    assert found == dict.fromkeys(NOT_MAPPED, False), found
    # The loader child did load bcc (the receiver started), and it exited.
    assert "child_peak_rss_mb=" in col.stderr()
    log = col.stderr()
    assert f"malloc arena_max={memory.ARENA_MAX}" in log
    totals = [ln for ln in log.splitlines() if "totals component=memory" in ln]
    assert totals and re.search(r"malloc_trims=[1-9]", totals[0]), log[-2000:]
