"""End to end: `collector --config` with go_runtime -> symbolize -> pprof, folded, read back
by `go tool pprof`: one file per profile, named after ProfileType.name, with the issue's
sample types (two values where Go's block profile has two) and real Go names from a
stripped binary.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.receivers.go_runtime import support
from tests.support import gotoolchains
from tests.support.collector_run import start_collector
from tests.support.encoding_pprof import go_pprof
from tests.support.pipelines import profiles_yaml

pytestmark = [pytest.mark.bpf, pytest.mark.slow]


# profile name -> its sample types, as `go tool pprof -raw` lists them
TYPES = {
    "goroutines": "goroutines/count",
    "goroutines_live": "goroutines/count",
    "sched_latency": "sched_waits/count sched_latency/nanoseconds",
    "gc_pause": "gc_pauses/count gc_pause/nanoseconds",
    "go_alloc": "alloc_objects/count alloc_space/bytes",
    "chan_block": "chan_blocks/count chan_block/nanoseconds",
}


def test_go_runtime_profiles_through_the_collector(tmp_path: Path) -> None:
    support.skip_unless_toolchain(gotoolchains.LATEST)
    binary = support.fixture("fixture", gotoolchains.LATEST, True)  # stripped
    out = tmp_path / "profiles"
    config = tmp_path / "config.yaml"
    config.write_text(
        profiles_yaml(
            out,
            {"go_runtime": {"binary": binary}},
            exporters=("pprof", "folded"),
            metrics_address=None,
        )
    )
    col = start_collector(config)
    try:
        # started after the collector: found through its exec
        proc = subprocess.Popen(
            [binary, "500", "6", "20000", "200", "25"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        col.wait_for(lambda: f"probing pid={proc.pid}" in col.stderr(), "the exec followed")
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"
        assert col.stop(signal.SIGINT) == 0, col.stderr()  # the last live snapshot: still alive
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(60) == 0
    finally:
        if col.proc.poll() is None:
            col.proc.kill()
    for name, types in TYPES.items():
        files = sorted(out.glob(f"{name}-*.pb.gz"))
        assert files, (name, sorted(p.name for p in out.iterdir()))
        raw = go_pprof(files[0], "-raw")
        assert _types(raw) == types, raw[:400]
    top = go_pprof(sorted(out.glob("goroutines-*.pb.gz"))[0], "-top", "-nodefraction=0")
    # flat flat% sum% cum cum% name: the cumulative count of the spawning function
    row = r"^\s*\d+\s+\S+\s+\S+\s+(\d+)\s+\S+\s+main\.spawnWorkers$"
    created = re.search(row, top, re.M)
    assert created and abs(int(created.group(1)) - 500) <= 10, top  # cum: 500 go statements
    alloc = go_pprof(
        sorted(out.glob("go_alloc-*.pb.gz"))[0], "-top", "-cum", "-sample_index=alloc_space"
    )
    assert "main.allocate" in alloc, alloc
    chan = go_pprof(sorted(out.glob("chan_block-*.pb.gz"))[0], "-traces")
    assert "main.waitForGo" in chan, chan
    live = go_pprof(sorted(out.glob("goroutines_live-*.pb.gz"))[0], "-traces")
    assert "main.leakForever" in live or "main.leakWorkers" in live, live


def _types(raw: str) -> str:
    """The sample types `go tool pprof -raw` lists on the line after ``Samples:``
    (``chan_blocks/count chan_block/nanoseconds[dflt]``), without the default's mark."""
    lines = raw.splitlines()
    header = lines[lines.index("Samples:") + 1] if "Samples:" in lines else ""
    return header.replace("[dflt]", "").strip()
