"""Busy hosts (issue #16) through the real collector on the real kernel.

- Many processes: 100 processes of 50 distinct binaries (tests/workloads/busy_many.c built
  with -DHOT=hot_<i>) saturate both CPUs. Stacks travel in the ring-buffer record, so none
  may be lost to stack bookkeeping: losses of any kind <= 1 % of the perf samples, and every
  process's own hot function is named in its samples.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.deploy.support import pprof_rows
from tests.support.collector_run import start_collector
from tests.support.pipelines import profiles_yaml
from tests.support.workloads import build

pytestmark = [pytest.mark.bpf, pytest.mark.slow]

LOSSES = (
    "stack_lost",
    "user_stack_collision",
    "kernel_stack_collision",
    "user_stack_map_full",
    "kernel_stack_map_full",
    "user_stack_error",
    "kernel_stack_error",
    "kernel_stack_missing",
    "ringbuf_full",
    "events_failed",
    "events_unread",
)


def totals(logs: str, component: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in logs.splitlines():
        if f"msg='totals component={component} " in line:
            out.update((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", line))
    return out


@pytest.mark.parametrize("unwind", ["frame_pointers", "auto"])
def test_many_processes_lose_nothing_and_are_all_named(tmp_path: Path, unwind: str) -> None:
    bins = [build("busy_many", ("-O1", f"-DHOT=hot_{i}")) for i in range(50)]
    out = tmp_path / "out"
    cfg = tmp_path / "pipeline.yaml"
    cpu = {"frequency": 199, "unwind": unwind}
    cfg.write_text(profiles_yaml(out, {"cpu": cpu}, exporters=("pprof",)))
    col = start_collector(cfg)
    try:
        procs = [subprocess.Popen([str(bins[i % 50]), "10"]) for i in range(100)]
        hot_of = {p.pid: f"hot_{i % 50}" for i, p in enumerate(procs)}
        for p in procs:
            assert p.wait() == 0
    finally:
        rc = col.stop()
    logs = col.logs()
    assert rc == 0, logs
    counts = totals(logs, "receivers/cpu")
    lost = {k: counts[k] for k in LOSSES if counts.get(k)}
    assert sum(lost.values()) <= 0.01 * counts["perf_samples"], (lost, counts)
    per_pid: dict[int, Counter[str]] = defaultdict(Counter)
    for labels, frames, n in pprof_rows(out):
        pid = labels.get("pid")
        if pid in hot_of:
            per_pid[pid][frames[0] if frames else ""] += n  # type: ignore[index]
    assert set(per_pid) == set(hot_of), "processes without a sample"
    unnamed = {pid: c for pid, c in per_pid.items() if c[hot_of[pid]] == 0}
    print("\n".join(ln for ln in logs.splitlines() if "totals" in ln))
    assert not unnamed, unnamed
    total = sum(sum(c.values()) for c in per_pid.values())
    named = sum(c[hot_of[pid]] for pid, c in per_pid.items())
    assert total >= 1500, total  # 10 s of two saturated CPUs at 199 Hz, with room
    assert named >= 0.9 * total, (named, total)


def test_storm_of_short_processes_leaves_no_state_behind() -> None:
    # 300 short processes (one in ten burns 0.2 s, so it is sampled, snapshotted and loaded
    # into the unwinder; the rest are /bin/true): once they are gone and the process table's
    # grace period has passed, nothing of theirs is held: no snapshot, no unwinder entry,
    # no deferred load, and pins only up to the idle bound.
    import asyncio
    import logging
    import os

    from collector.component import CreateSettings
    from collector.host import Host
    from receivers.cpu import factory
    from receivers.cpu.config import CpuConfig

    burner = build("busy_many", ("-O1", "-DHOT=hot_storm"))
    host = Host()
    table = host.processes
    table.grace_s = 0.5

    class Sink:
        def consume(self, batch: object) -> bool:
            return True

    def receiver():  # type: ignore[no-untyped-def]
        return factory.create(
            CreateSettings(id="cpu", logger=logging.getLogger("test"), consumer=Sink()),
            CpuConfig(frequency=499, drain_interval=0.1, unwind="auto"),
        )

    async def warm() -> None:
        # The on-disk table cache holds the burner's, libc's and ld.so's tables, as on a host
        # the collector ran on before: on a fresh machine the first burners would otherwise
        # pay for those builds and the budget (0.1 of a core) would load few of the rest.
        # (This process is the collector here: it is not sampled, profile_self is off.)
        first = receiver()
        await first.start(host)
        burning = await asyncio.create_subprocess_exec(str(burner), "30")
        try:
            assert await asyncio.to_thread(first._unwind.preload, [burning.pid], 60.0)  # type: ignore[attr-defined]
        finally:
            burning.kill()
            await burning.wait()
            await first.shutdown()

    async def run() -> tuple[list[int], list[int], set[int], int]:
        await warm()
        measured = receiver()
        await measured.start(host)
        unwind = measured._unwind  # type: ignore[attr-defined]
        assert unwind is not None, "unwind: auto fell back to frame pointers"
        pids = []
        for i in range(300):
            argv = [str(burner), "0.2"] if i % 10 == 0 else ["/bin/true"]
            proc = await asyncio.create_subprocess_exec(*argv)
            pids.append(proc.pid)
            await proc.wait()
        await asyncio.sleep(1.5)  # the exits are read, the grace period passes
        table.observe(os.getpid())  # a table operation sweeps what expired
        loaded = [p for p in pids if unwind.maps.entries(p)]
        deferred = set(measured._unwind_deferred)  # type: ignore[attr-defined]
        tables_loaded = int(unwind.maps.stats()["processes_loaded"])
        await measured.shutdown()
        return pids, loaded, deferred, tables_loaded

    pids, loaded, deferred, tables_loaded = asyncio.run(run())
    counters = host.counters.snapshot()
    assert counters["processes"]["snapshots_taken"] >= 30, counters  # the burners at least
    # Burners were loaded into the unwinder (54 loads here, this process's and /bin/true's
    # among them; how many depends on the machine, but with the cache warm, not a handful).
    assert tables_loaded >= 10, (tables_loaded, str(counters["cpu"]))
    left = [table.lookup(p) for p in pids if table.lookup(p) is not None]
    assert not left, [(s.pid, s.comm, s.exe_path, s.ended_ns) for s in left]
    assert not loaded, (loaded, str(counters["cpu"]))
    assert not (deferred & set(pids))
    assert table.stats()["pinned_files"] <= table.max_idle_pinned + table.stats()["snapshots"] * 8
