"""Heap profiling overhead, side by side in one run, rounds interleaved.

Two workloads (C, built here with -O2), each waiting for a line on stdin so every profiler is
attached before it starts, and timing itself (CLOCK_MONOTONIC, printed in seconds):
  pure       N malloc(64)/free pairs in a loop (default 2M): nothing but allocator calls
  realistic  the same number of calls spread over real work: an allocation of 16 B - 4 KiB
             every ~3 us of computation, a quarter of them kept in a ring of 4096 live blocks
Profilers, each attached to the workload's pid only:
  none        nothing
  floor       empty BPF programs on uprobes at malloc and free (the trap floor of the issue)
  memleak     bcc's memleak-bpfcc -p PID (a stack walk and map update on every call)
  sampled     the heap receiver through the real collector CLI (default sample_bytes 512 KiB)
  page_faults the heap receiver in page_faults mode
Printed: the median seconds per profiler and workload, and the ratios the issue sets targets
for (sampled / floor on pure <= 1.15, page_faults / none <= 1.02, sampled / none on
realistic <= 1.3), plus the BPF run time per call of each of our programs (bpf_stats).

Run as root after scripts/setup.sh test:
    .venv/bin/python benchmarks/heap_overhead.py [--rounds 3] [--calls 2000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collector.bpf import AttachSpec, load  # noqa: E402
from collector.bpf.uprobe import open_uprobe, symbol_offsets  # noqa: E402
from receivers.heap.targets import allocator_path  # noqa: E402
from tests.support.collector_run import start_collector  # noqa: E402

BENCH_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static volatile unsigned long sink;
__attribute__((noinline)) static void work(int n) {
    unsigned long x = sink;
    for (int i = 0; i < n; i++)
        x = x * 6364136223846793005ul + 1442695040888963407ul;
    sink = x;
}
int main(int argc, char **argv) {
    long n = atol(argv[2]);
    int realistic = strcmp(argv[1], "realistic") == 0;
    int spin = argc > 3 ? atoi(argv[3]) : 0;
    static char *ring[4096];
    char line[16];
    if (!fgets(line, sizeof(line), stdin))
        return 1;
    double t0 = now();
    unsigned long r = 1;
    for (long i = 0; i < n; i++) {
        if (!realistic) {
            char *p = malloc(64);
            sink += (unsigned long)p;
            free(p);
            continue;
        }
        work(spin);
        r = r * 6364136223846793005ul + 1;
        size_t size = 16 + (r >> 33) % 4080;
        char *p = malloc(size);
        p[0] = 1;
        if ((r >> 20) % 4 == 0) {
            unsigned slot = (r >> 40) % 4096;
            free(ring[slot]);
            ring[slot] = p;
        } else {
            free(p);
        }
    }
    printf("%.6f\n", now() - t0);
    fflush(stdout);
    return 0;
}
"""

CONFIG = """
receivers:
  heap:
    pids: [%(pid)d]
    mode: %(mode)s
processors:
  symbolize: {}
exporters:
  folded:
    directory: %(out)s
service:
  telemetry:
    metrics: {address: ""}
  pipelines:
    profiles:
      receivers: [heap]
      processors: [symbolize]
      exporters: [folded]
"""
PROFILERS = ("none", "floor", "memleak", "sampled", "page_faults")


def build(tmp: Path) -> Path:
    src = tmp / "heap_bench.c"
    src.write_text(BENCH_C)
    out = tmp / "heap_bench"
    subprocess.run(["gcc", "-O2", "-o", str(out), str(src)], check=True)
    return out


def spin_for(binary: Path, micros: float) -> int:
    """Iterations of work() that take about ``micros`` on this machine, unprofiled."""
    spin = 1000
    proc = subprocess.run(
        [str(binary), "realistic", "20000", str(spin)],
        input="go\n",
        capture_output=True,
        text=True,
        check=True,
    )
    per_call = float(proc.stdout) / 20000
    return max(1, round(spin * micros * 1e-6 / per_call))


def run_once(binary: Path, args: list[str], profiler: str, tmp: Path) -> tuple[float, float]:
    """(wall seconds of the timed part, CPU seconds of the whole workload process: the traps
    are charged to it, and CPU time is less disturbed by neighbours than wall time)."""
    wl = subprocess.Popen(
        [str(binary), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert wl.stdin is not None and wl.stdout is not None
    stop = attach(profiler, wl.pid, tmp)
    try:
        wl.stdin.write("go\n")
        wl.stdin.flush()
        seconds = float(wl.stdout.readline())
        _, status, usage = os.wait4(wl.pid, 0)
        wl.returncode = os.waitstatus_to_exitcode(status)
    finally:
        stop()
    return seconds, usage.ru_utime + usage.ru_stime


def attach(profiler: str, pid: int, tmp: Path):  # returns the closer
    if profiler == "none":
        return lambda: None
    if profiler == "floor":
        prog = load("heap", {}, [AttachSpec("program", "on_empty", "on_empty")])
        fd = prog.attachments[0]["fd"]
        time.sleep(0.05)  # the loader maps libc by now
        path = allocator_path(pid, "libc.so.6")
        assert path is not None
        offsets = symbol_offsets(path, ("malloc", "free"))
        fds = [open_uprobe(fd, path, offsets[s], pid) for s in ("malloc", "free")]

        def close() -> None:
            for f in fds:
                os.close(f)
            prog.close()

        return close
    if profiler == "memleak":
        ml = subprocess.Popen(
            ["memleak-bpfcc", "-p", str(pid), "5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert ml.stdout is not None
        for line in ml.stdout:  # "Attaching to pid N, Ctrl+C to quit." once probes are in
            if "Attaching" in line:
                break
        time.sleep(1.0)  # it prints before attaching the last probes

        def stop_memleak() -> None:
            ml.terminate()
            ml.wait()

        return stop_memleak
    cfg = tmp / f"{profiler}.yaml"
    cfg.write_text(CONFIG % {"pid": pid, "mode": profiler, "out": tmp / "out"})
    col = start_collector(cfg)
    return lambda: col.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=2_000_000)
    ap.add_argument("--micros", type=float, default=3.0, help="work between realistic calls")
    ap.add_argument("--profilers", nargs="+", default=list(PROFILERS), choices=PROFILERS)
    args = ap.parse_args()
    if shutil.which("memleak-bpfcc") is None and "memleak" in args.profilers:
        args.profilers.remove("memleak")
        print("memleak-bpfcc not found: skipped")
    tmp = Path(tempfile.mkdtemp(prefix="heap-overhead-"))
    binary = build(tmp)
    spin = spin_for(binary, args.micros)
    workloads = {
        "pure": ["pure", str(args.calls)],
        "realistic": ["realistic", str(args.calls // 4), str(spin)],
    }
    times: dict[tuple[str, str], list[float]] = {}
    walls: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        for wname, wargs in workloads.items():
            for prof in args.profilers:
                wall, cpu = run_once(binary, wargs, prof, tmp)
                times.setdefault((wname, prof), []).append(cpu)
                walls.setdefault((wname, prof), []).append(wall)
                print(
                    f"round {r + 1} {wname:9} {prof:11} cpu {cpu:8.3f} s wall {wall:8.3f} s",
                    flush=True,
                )
    print(
        f"\nmedians over {args.rounds} rounds ({args.calls} calls pure, {args.calls // 4} "
        f"realistic with ~{args.micros:g} us of work each):"
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    wmed = {k: statistics.median(v) for k, v in walls.items()}
    print("workload CPU seconds (utime+stime, ratios from these); wall seconds in brackets")
    print(f"{'profiler':12} {'pure s':>18} {'realistic s':>18} {'pure/none':>10} {'real/none':>10}")
    for prof in args.profilers:
        p, q = med[("pure", prof)], med[("realistic", prof)]
        pw, qw = wmed[("pure", prof)], wmed[("realistic", prof)]
        print(
            f"{prof:12} {p:8.3f} [{pw:7.3f}] {q:8.3f} [{qw:7.3f}] "
            f"{p / med[('pure', 'none')]:10.2f} {q / med[('realistic', 'none')]:10.3f}"
        )
    if {"floor", "sampled"} <= set(args.profilers):
        print(
            f"\nsampled / floor, pure: {med[('pure', 'sampled')] / med[('pure', 'floor')]:.3f}"
            " (target <= 1.15)"
        )
        print(
            f"sampled / none, realistic: "
            f"{med[('realistic', 'sampled')] / med[('realistic', 'none')]:.3f} (target <= 1.3)"
        )
    if "page_faults" in args.profilers:
        for w in workloads:
            print(
                f"page_faults / none, {w}: "
                f"{med[(w, 'page_faults')] / med[(w, 'none')]:.3f} (target <= 1.02)"
            )


if __name__ == "__main__":
    main()
