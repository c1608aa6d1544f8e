"""What table unwinding costs in the real cpu receiver: frame pointers vs tables, side by side.

For each mode the cpu receiver runs in this process at ``--hz`` on every CPU while two -O2
workloads without frame pointers (tests/workloads/unwind_qsort.c: a callback under libc's
qsort, 13 frames) keep both CPUs busy. Printed per mode: BPF ns per sample (bpf_stats:
run_time / run_cnt of on_sample, every sample included), the receiver's CPU in the steady
state (this process's user+system time over the second half of the run, after the tables
were built, as % of one core), the workload's samples and their median user frames.
Root; the two modes alternate ``--rounds`` times.

    .venv/bin/python benchmarks/unwind_cost.py --seconds 20 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.component import CreateSettings
from collector.host import Host
from collector.model import RawBatch
from collector.unwind.bpfstats import enable_stats, prog_stats, restore_stats
from receivers.cpu import factory
from receivers.cpu.config import CpuConfig
from tests.support.workloads import build

O2 = ("-O2", "-fomit-frame-pointer")


class Consumer:
    def __init__(self) -> None:
        self.samples = 0
        self.depths: list[int] = []
        self.pids: set[int] = set()

    def consume(self, batch: RawBatch) -> bool:
        for s in batch.samples:
            if s.pid in self.pids:
                self.samples += 1
                self.depths.append(sum(1 for a in s.user_stack if a >= 0))
        return True


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def _one(mode: str, hz: int, seconds: float, binary: Path) -> dict[str, float]:
    consumer = Consumer()
    config = CpuConfig(frequency=hz, unwind=mode)  # type: ignore[arg-type]
    rec = factory.create(
        CreateSettings(id="cpu", logger=logging.getLogger("b"), consumer=consumer), config
    )
    await rec.start(Host())
    procs = [
        subprocess.Popen([str(binary), str(seconds)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    for p in procs:
        assert p.stdin is not None and p.stdout is not None
        p.stdout.readline()
        consumer.pids.add(p.pid)
        p.stdin.write(b"go\n")
        p.stdin.flush()
    await asyncio.sleep(seconds / 2)
    c0, t0 = _cpu_s(), time.monotonic()
    await asyncio.sleep(seconds / 2)
    c1, t1 = _cpu_s(), time.monotonic()
    stats = prog_stats("on_sample", rec._prog.map("events"))  # type: ignore[union-attr]
    for p in procs:
        p.wait()
    await rec.shutdown()
    ns = stats[0] / max(stats[1], 1) if stats else float("nan")
    return {
        "bpf_ns": ns,
        "cpu_pct": 100 * (c1 - c0) / (t1 - t0),
        "samples": consumer.samples,
        "frames": statistics.median(consumer.depths) if consumer.depths else 0,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--hz", type=int, default=99)
    args = ap.parse_args()
    was_on = enable_stats()
    binary = build("unwind_qsort", O2)
    results: dict[str, list[dict[str, float]]] = {"frame_pointers": [], "tables": []}
    for _ in range(args.rounds):
        for mode in results:
            results[mode].append(asyncio.run(_one(mode, args.hz, args.seconds, binary)))
    print(
        f"{'mode':16} {'BPF ns/sample':>14} {'collector CPU %':>16} {'samples':>8}"
        f" {'median user frames':>19}"
    )
    for mode, runs in results.items():
        for r in runs:
            print(
                f"{mode:16} {r['bpf_ns']:14.0f} {r['cpu_pct']:16.2f} {r['samples']:8.0f}"
                f" {r['frames']:19.1f}"
            )
    restore_stats(was_on)
    fp = sum(r["bpf_ns"] for r in results["frame_pointers"]) / args.rounds
    tb = sum(r["bpf_ns"] for r in results["tables"]) / args.rounds
    print(f"BPF time per sample, tables / frame pointers: {tb / fp:.2f}")


if __name__ == "__main__":
    main()
