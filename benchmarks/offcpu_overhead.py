"""Off-CPU profiling overhead on a context-switch storm, side by side in one run.

The storm is `perf bench sched pipe` (two processes ping-ponging over a pipe: every operation is
two blocking reads, so every switch is an interruptible wait the receiver records). Modes:
  none      no probe
  naive     a sched_switch tracepoint that walks user+kernel stacks on every switch (bcc)
  offcpu    the offcpu receiver (in a child process, reader thread and all) with default
            settings; more variants as `offcpu:<json settings>`
Modes alternate over several rounds so drift and neighbours hit them alike; medians are
printed with the slowdown of the storm (wall time per operation) against `none`, and the
probe process's own CPU seconds.

Run as root after scripts/setup.sh test:
    .venv/bin/python benchmarks/offcpu_overhead.py [--rounds 5] [--loops 300000] \
        [--mode 'offcpu:{"sample_ratio": 0.1}' ...] [--pin]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NAIVE = r"""
BPF_STACK_TRACE(stacks, 16384);
BPF_HASH(counts, u64, u64, 16384);
TRACEPOINT_PROBE(sched, sched_switch) {
    u32 u = stacks.get_stackid(args, BPF_F_USER_STACK);
    u32 k = stacks.get_stackid(args, 0);
    u64 key = ((u64)u << 32) | k;
    counts.increment(key);
    return 0;
}
"""


# -- child processes: hold a probe until stdin closes --------------------------------------


def _cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def child_naive() -> None:
    from bcc import BPF

    bpf = BPF(text=NAIVE)
    print("ready", flush=True)
    cpu0 = _cpu_seconds()
    sys.stdin.readline()
    print(json.dumps({"cpu_s": _cpu_seconds() - cpu0, "samples": 0}), flush=True)
    bpf.cleanup()


def child_offcpu(settings: dict) -> None:
    import logging

    from collector.component import CreateSettings
    from collector.host import Host
    from receivers.offcpu import factory
    from receivers.offcpu.config import OffCpuConfig

    class Counting:
        samples = 0

        def consume(self, batch) -> bool:  # type: ignore[no-untyped-def]
            Counting.samples += len(batch.samples)
            return True

    async def main() -> None:
        host = Host()
        config = OffCpuConfig.model_validate(settings)
        receiver = factory.create(
            CreateSettings("offcpu", logging.getLogger("bench"), Counting()), config
        )
        await receiver.start(host)
        print("ready", flush=True)
        cpu0 = _cpu_seconds()
        await asyncio.to_thread(sys.stdin.readline)
        cpu = _cpu_seconds() - cpu0
        await receiver.shutdown()
        result = {"cpu_s": cpu, "samples": Counting.samples}
        result["counters"] = host.counters.snapshot().get("offcpu", {})
        print(json.dumps(result), flush=True)

    asyncio.run(main())


# -- the parent: alternate modes, run the storm --------------------------------------------


def storm(loops: int, pin: bool) -> tuple[float, float]:
    """(wall microseconds per operation, storm CPU microseconds per operation)."""
    argv = ["perf", "bench", "sched", "pipe", "-l", str(loops)]
    if pin:
        argv = ["taskset", "-c", "0", *argv]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, ru = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"perf bench failed: {out}")
    m = re.search(r"([\d.]+) usecs/op", out)
    if m is None:
        raise SystemExit(f"unexpected perf bench output: {out}")
    return float(m.group(1)), (ru.ru_utime + ru.ru_stime) * 1e6 / loops


def run_mode(mode: str, loops: int, pin: bool) -> dict:
    if mode == "none":
        wall, cpu = storm(loops, pin)
        return {"wall": wall, "storm_cpu": cpu, "probe_cpu_s": 0.0, "samples": 0}
    if mode == "naive":
        argv = [sys.executable, __file__, "--child", "naive"]
    else:
        settings = mode.split(":", 1)[1] if ":" in mode else "{}"
        argv = [sys.executable, __file__, "--child", "offcpu", settings]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin and child.stdout
    if child.stdout.readline().strip() != "ready":
        raise SystemExit(f"probe {mode} failed to start")
    time.sleep(0.2)
    wall, cpu = storm(loops, pin)
    child.stdin.write("stop\n")
    child.stdin.flush()
    result = json.loads(child.stdout.readline())
    child.wait()
    return {
        "wall": wall,
        "storm_cpu": cpu,
        "probe_cpu_s": result["cpu_s"],
        "samples": result["samples"],
        "counters": result.get("counters", {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loops", type=int, default=300_000)
    parser.add_argument("--pin", action="store_true", help="both storm processes on CPU 0")
    parser.add_argument("--mode", action="append", default=[], help="extra offcpu:<json> mode")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "naive":
            child_naive()
        else:
            child_offcpu(json.loads(args.child[1]))
        return
    modes = ["none", "naive", "offcpu", *args.mode]
    results: dict[str, list[dict]] = {m: [] for m in modes}
    for r in range(args.rounds):
        for mode in modes:
            res = run_mode(mode, args.loops, args.pin)
            results[mode].append(res)
            print(
                f"round {r + 1} {mode:40s} {res['wall']:.3f} us/op wall "
                f"{res['storm_cpu']:.3f} us/op cpu samples={res['samples']}",
                file=sys.stderr,
                flush=True,
            )
    base = statistics.median(x["wall"] for x in results["none"])
    base_cpu = statistics.median(x["storm_cpu"] for x in results["none"])
    print(f"storm: perf bench sched pipe -l {args.loops}{' (pinned)' if args.pin else ''}")
    print(f"{'mode':42s} {'us/op':>7s} {'slowdown':>9s} {'cpu/op':>7s} {'probe cpu s':>11s}")
    for mode, runs in results.items():
        wall = statistics.median(x["wall"] for x in runs)
        cpu = statistics.median(x["storm_cpu"] for x in runs)
        probe = statistics.median(x["probe_cpu_s"] for x in runs)
        print(
            f"{mode:42s} {wall:7.3f} {wall / base - 1:+8.1%} {cpu / base_cpu - 1:+7.1%} "
            f"{probe:11.2f}"
        )
        counters = runs[-1].get("counters")
        if counters:
            print(f"  last round counters: {json.dumps(counters, sort_keys=True)}")


if __name__ == "__main__":
    main()
