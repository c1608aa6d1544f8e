"""The symbolizer under a descriptor budget: it holds no fd of its own between reads, and a
binary whose pin the process table parked is reopened for its DWARF and still named right."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from collector.model import RawBatch, RawSample, cpu_profile_type
from collector.proc import ProcessTable
from collector.telemetry import Counters
from processors.symbolize import SymbolizeConfig, Symbolizer
from tests.support import symbolize_fixtures as fx


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_parked_binaries_are_reopened_and_named(
    fixture_bins: dict[str, Path], tmp_path: Path
) -> None:
    counters = Counters()
    table = ProcessTable(counters, max_pinned=4, max_idle_pinned=0)
    sym = Symbolizer(table, SymbolizeConfig(kernel=False, dwarf_lines=True), counters)
    run = fx.start(fixture_bins["pie"])
    others = []
    try:
        before = _open_fds()
        table.observe(run.pid)
        for i in range(6):  # more distinct binaries than the budget: the fixture's are parked
            app = tmp_path / f"sleep{i}"
            shutil.copyfile("/bin/sleep", app)
            with app.open("ab") as f:
                f.write(bytes([i]))
            app.chmod(0o755)
            others.append(subprocess.Popen([str(app), "30"]))
        time.sleep(0.2)
        for p in others:
            table.observe(p.pid)
        assert counters.get("processes", "pin_parked") > 0
        a = run.addrs
        user = (a["leaf_work"] + 1, a["lib_compute"] + 4, a["caller_work"] + 4)
        sample = RawSample(run.pid, run.pid, 0, "fixture", time.time_ns(), 1, user)
        [s] = sym.symbolize(RawBatch(cpu_profile_type(99), [sample])).samples
        frames = s.stack.frames
        assert [f.label() for f in frames] == ["leaf_work", "lib_compute", "caller_work"]
        assert frames[0].lines[-1].line == fx.source_line("fixture.c", "leaf_work")
        assert counters.get("processes", "pin_reopened") > 0
        # Pins within their budget, nothing held by the symbolizer's loaded binaries.
        assert table.stats()["open_pins"] <= 4
        assert _open_fds() <= before + 4
    finally:
        run.stop()
        for p in others:
            p.kill()
            p.wait()
        table.close()
