"""Off-CPU profiling overhead on a context-switch storm, side by side in one run.

The storm is `perf bench sched pipe` (two processes ping-ponging over a pipe: every operation is
two blocking reads, so every switch is an interruptible wait the receiver records). Modes:
  none      no probe
  naive     a sched_switch tracepoint that walks user+kernel stacks on every switch (bcc)
  offcpu    the offcpu receiver (in a child process, reader thread and all) with default
            settings (max_rate 2000/s per CPU); more variants as `offcpu:<json settings>`,
            e.g. `offcpu:{"max_rate": 0}` for every switch-out recorded
Modes alternate over several rounds so drift and neighbours hit them alike; medians are
printed with the slowdown of the storm (wall time per operation) against `none`, and the
probe process's own CPU seconds. Two storm placements:
  same    both storm processes pinned to CPU 0: pure context-switch cost, very repeatable
  cross   the same ping-pong as a small C program with one side pinned to each of CPUs 0
          and 1 (perf bench cannot pin each side): every operation includes two cross-CPU
          wake-ups from idle (tens of microseconds in this VM; the regime where the naive
          probe costs ~30 %)
  spread  perf bench unpinned: the scheduler flips between the two regimes, noisy
Then, per mode, the in-kernel cost of one sched_switch run of the program (kernel.bpf_stats
run_time_ns / run_cnt on the same-CPU storm; bcc loads bpf/offcpu.bpf.c with the receiver's
defines, in a fresh process per mode).

Run as root after scripts/setup.sh test:
    .venv/bin/python benchmarks/offcpu_overhead.py [--rounds 5] [--placement same spread] \
        [--mode 'offcpu:{"sample_ratio": 0.1}' ...]
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

PINGPONG_C = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
static void pin(int cpu) {
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    sched_setaffinity(0, sizeof(s), &s);
}
int main(int argc, char **argv) {
    long loops = atol(argv[1]);
    int a[2], b[2];
    char c = 0;
    if (pipe(a) || pipe(b)) return 1;
    if (fork() == 0) {
        pin(1);
        for (long i = 0; i < loops; i++)
            if (read(a[0], &c, 1) != 1 || write(b[1], &c, 1) != 1)
                return 1;
        return 0;
    }
    pin(0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < loops; i++)
        if (write(a[1], &c, 1) != 1 || read(b[0], &c, 1) != 1)
            return 1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    wait(NULL);
    double us = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
    printf("%f usecs/op\n", us / loops);
    return 0;
}
"""
PINGPONG = Path("/tmp/offcpu-bench-pingpong")

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


def child_cost(settings: dict, loops: int) -> None:
    """ns per run of the sched_switch program on the same-CPU storm (bpf_stats)."""
    from bcc import BPF

    import bpf as bpf_sources
    from collector.bpf.child import inline_local_includes
    from receivers.offcpu.config import OffCpuConfig
    from receivers.offcpu.receiver import bpf_defines

    config = OffCpuConfig.model_validate(settings)
    defines = bpf_defines(config, os.cpu_count() or 1)
    cflags = [f"-I{bpf_sources.source_dir()}", *(f"-D{k}={v}" for k, v in defines.items())]
    fn = b"on_switch_raw" if config.hook == "raw_tracepoint" else b"on_switch_tp"
    # bcc rewrites map operations only in the main file: paste common.h in, as the loader does
    text = inline_local_includes(bpf_sources.source_path("offcpu"), bpf_sources.source_dir())
    bpf = BPF(text=text.encode(), cflags=cflags)
    if config.hook == "raw_tracepoint":
        bpf.attach_raw_tracepoint(tp=b"sched_switch", fn_name=fn)
    else:
        bpf.attach_tracepoint(tp=b"sched:sched_switch", fn_name=fn)
    with open("/proc/sys/kernel/bpf_stats_enabled") as f:
        was = f.read().strip()
    with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
        f.write("1")
    try:
        storm(loops, "same")
        with open(f"/proc/self/fdinfo/{bpf.funcs[fn].fd}") as f:
            info = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
    finally:
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write(was)
    runs = int(info["run_cnt"])
    print(json.dumps({"ns_per_run": int(info["run_time_ns"]) / max(runs, 1), "runs": runs}))


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


def build_pingpong() -> None:
    src = PINGPONG.with_suffix(".c")
    src.write_text(PINGPONG_C)
    subprocess.run(["gcc", "-O2", "-o", str(PINGPONG), str(src)], check=True)


def storm(loops: int, placement: str) -> tuple[float, float]:
    """(wall microseconds per operation, storm CPU microseconds per operation)."""
    argv = ["perf", "bench", "sched", "pipe", "-l", str(loops)]
    if placement == "same":
        argv = ["taskset", "-c", "0", *argv]
    elif placement == "cross":
        argv = [str(PINGPONG), str(loops)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, ru = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"perf bench failed: {out}")
    m = re.search(r"([\d.]+) usecs/op", out)
    if m is None:
        raise SystemExit(f"unexpected perf bench output: {out}")
    return float(m.group(1)), (ru.ru_utime + ru.ru_stime) * 1e6 / loops


def run_mode(mode: str, loops: int, placement: str) -> dict:
    if mode == "none":
        wall, cpu = storm(loops, placement)
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
    wall, cpu = storm(loops, placement)
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
    parser.add_argument("--same-loops", type=int, default=300_000)
    parser.add_argument("--cross-loops", type=int, default=50_000)
    parser.add_argument("--placement", nargs="+", default=["same", "cross"])
    parser.add_argument("--mode", action="append", default=[], help="extra offcpu:<json> mode")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "naive":
            child_naive()
        elif args.child[0] == "cost":
            child_cost(json.loads(args.child[1]), args.same_loops)
        else:
            child_offcpu(json.loads(args.child[1]))
        return
    modes = ["none", "naive", "offcpu", 'offcpu:{"max_rate": 0}', *args.mode]
    build_pingpong()
    for placement in args.placement:
        loops = args.same_loops if placement == "same" else args.cross_loops
        report(placement, modes, args.rounds, loops)
    print("in-kernel cost per sched_switch (same-CPU storm, bpf_stats)")
    for mode in modes[2:]:
        settings = mode.split(":", 1)[1] if ":" in mode else "{}"
        argv = [sys.executable, __file__, "--child", "cost", settings]
        argv += ["--same-loops", str(min(args.same_loops, 100_000))]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        cost = json.loads(out.strip().splitlines()[-1])
        print(f"  {mode:42s} {cost['ns_per_run']:6.0f} ns/run over {cost['runs']} runs")


def report(placement: str, modes: list[str], rounds: int, loops: int) -> None:
    results: dict[str, list[dict]] = {m: [] for m in modes}
    for r in range(rounds):
        for mode in modes:
            res = run_mode(mode, loops, placement)
            results[mode].append(res)
            print(
                f"{placement} round {r + 1} {mode:40s} {res['wall']:.3f} us/op wall "
                f"{res['storm_cpu']:.3f} us/op cpu samples={res['samples']}",
                file=sys.stderr,
                flush=True,
            )
    base = statistics.median(x["wall"] for x in results["none"])
    base_cpu = statistics.median(x["storm_cpu"] for x in results["none"])
    what = "pipe ping-pong across CPUs 0/1" if placement == "cross" else "perf bench sched pipe"
    print(f"storm: {what}, {loops} operations, placement {placement}, {rounds} rounds")
    print(f"{'mode':42s} {'us/op':>7s} {'slowdown':>9s} {'cpu/op':>7s} {'probe cpu s':>11s}")
    for mode, runs in results.items():
        wall = statistics.median(x["wall"] for x in runs)
        cpu = statistics.median(x["storm_cpu"] for x in runs)
        probe = statistics.median(x["probe_cpu_s"] for x in runs)
        samples = statistics.median(x["samples"] for x in runs)
        print(
            f"{mode:42s} {wall:7.3f} {wall / base - 1:+8.1%} {cpu / base_cpu - 1:+7.1%} "
            f"{probe:11.2f}  samples={samples:.0f}"
        )
        counters = {k: v for k, v in runs[-1].get("counters", {}).items() if k != "bpf_events"}
        if counters:
            print(f"  last round counters: {json.dumps(counters, sort_keys=True)}")


if __name__ == "__main__":
    main()
