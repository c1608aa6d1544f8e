"""Heap profiling overhead, side by side in one run, rounds interleaved.

Two workloads (C, built here with -O2), each waiting for a line on stdin so every profiler is
attached before it starts, and timing itself (CLOCK_MONOTONIC, printed in seconds):
  pure       N malloc(64)/free pairs in a loop (default 2M): nothing but allocator calls
  real@Xus   malloc/free pairs of 16 B - 4 KiB, each after ~X us of computation (--micros,
             3 and 30 by default; ~1.5 s unprofiled each), a quarter of the blocks kept in a
             ring of 4096 live ones
Profilers, each attached to the workload's pid only:
  none        nothing
  floor       empty BPF programs on uprobes at malloc and free (the trap floor of the issue)
  memleak     bcc's memleak-bpfcc -p PID (a stack walk and map update on every call)
  sampled     the heap receiver through the real collector CLI (default sample_bytes 512 KiB)
  page_faults the heap receiver in page_faults mode
Printed: the median seconds per profiler and workload, and the ratios the issue sets targets
for (sampled / floor on pure <= 1.15, page_faults / none <= 1.02, sampled / none on
realistic <= 1.3), the trap floor per call, and the BPF run time per call of the programs
(kernel.bpf_stats_enabled is set for the run and restored).

Run as root after scripts/setup.sh test:
    .venv/bin/python benchmarks/heap_overhead.py [--rounds 3] [--calls 2000000]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import statistics
import struct
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
from tests.support.pipelines import profiles_yaml  # noqa: E402

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

# memleak last in each round: its uprobes linger a moment after it exits (see attach)
PROFILERS = ("none", "floor", "sampled", "page_faults", "memleak")
OUR_PROGRAMS = frozenset({"on_empty", "on_malloc", "on_free", "on_alloc_return", "on_realloc"})


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


def run_once(
    binary: Path, args: list[str], profiler: str, tmp: Path, stats: dict[str, list[float]]
) -> tuple[float, float]:
    """(wall seconds of the timed part, CPU seconds of the whole workload process: the traps
    are charged to it, and CPU time is less disturbed by neighbours than wall time). BPF run
    time per call of each of our programs goes to ``stats``."""
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
        if profiler in ("floor", "sampled"):
            for name, ns in bpf_ns_per_run().items():
                if (name == "on_empty") == (profiler == "floor"):  # only the run's own
                    stats.setdefault(f"{profiler} {name}", []).append(ns)
    finally:
        stop()
    return seconds, usage.ru_utime + usage.ru_stime


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
SYS_BPF = 321  # x86-64
BPF_PROG_GET_NEXT_ID, BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD = 11, 13, 15
PROG_INFO_SIZE = 208  # struct bpf_prog_info up to run_cnt (name at 64, run_time_ns at 192)


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    return _libc.syscall(SYS_BPF, cmd, attr, ctypes.sizeof(attr))


def bpf_ns_per_run() -> dict[str, float]:
    """kernel.bpf_stats run time per run of the heap programs loaded now, over every loaded
    program (BPF_PROG_GET_NEXT_ID, BPF_OBJ_GET_INFO_BY_FD; no bpftool needed)."""
    got: dict[str, float] = {}
    prog_id = 0
    while True:
        attr = ctypes.create_string_buffer(struct.pack("<III", prog_id, 0, 0), 16)
        if _bpf(BPF_PROG_GET_NEXT_ID, attr) != 0:
            return got
        prog_id = struct.unpack_from("<I", attr, 4)[0]
        attr = ctypes.create_string_buffer(struct.pack("<III", prog_id, 0, 0), 16)
        fd = _bpf(BPF_PROG_GET_FD_BY_ID, attr)
        if fd < 0:
            continue
        try:
            info = ctypes.create_string_buffer(PROG_INFO_SIZE)
            attr = ctypes.create_string_buffer(
                struct.pack("<IIQ", fd, PROG_INFO_SIZE, ctypes.addressof(info)), 16
            )
            if _bpf(BPF_OBJ_GET_INFO_BY_FD, attr) != 0:
                continue
        finally:
            os.close(fd)
        name = info.raw[64:80].split(b"\0", 1)[0].decode()
        run_ns, runs = struct.unpack_from("<QQ", info, 192)
        if name in OUR_PROGRAMS and runs:
            got[name] = got.get(name, 0.0) + run_ns / runs


def attach(profiler: str, pid: int, tmp: Path):  # returns the closer
    """Attach ``profiler`` to ``pid``, retried: uprobes of the previous run (memleak's carry a
    stray ref_ctr_offset, iovisor/bcc#5236) can linger a moment after it exits, and the
    kernel refuses other uprobes at their addresses meanwhile (EINVAL)."""
    if profiler == "none":
        return lambda: None
    if profiler == "memleak":
        return start_memleak(pid)
    for _attempt in range(20):
        closer = attach_floor(pid) if profiler == "floor" else attach_collector(profiler, pid, tmp)
        if closer is not None:
            return closer
        time.sleep(1.0)
    raise RuntimeError(f"{profiler} could not attach to pid {pid} twenty times")


def attach_floor(pid: int):  # the closer, or None when the kernel refused a uprobe
    prog = load("heap", {}, [AttachSpec("program", "on_empty", "on_empty")])
    fd = prog.attachments[0]["fd"]
    time.sleep(0.05)  # the loader maps libc by now
    path = allocator_path(pid, "libc.so.6")
    assert path is not None
    offsets = symbol_offsets(path, ("malloc", "free"), entry_sites=True)  # as the receiver
    fds: list[int] = []
    try:
        for sym in ("malloc", "free"):
            fds.append(open_uprobe(fd, path, offsets[sym], pid))
    except OSError:
        for f in fds:
            os.close(f)
        prog.close()
        return None

    def close() -> None:
        for f in fds:
            os.close(f)
        prog.close()

    return close


def attach_collector(mode: str, pid: int, tmp: Path):  # the closer, or None if not attached
    cfg = tmp / f"{mode}.yaml"
    heap = {"pids": [pid], "mode": mode}
    cfg.write_text(profiles_yaml(tmp / "out", {"heap": heap}, interval=None, metrics_address=""))
    col = start_collector(cfg)
    if mode == "sampled" and "heap target attached" not in col.stderr():
        col.stop()
        return None
    return lambda: col.stop()


def start_memleak(pid: int):  # returns the closer
    """memleak-bpfcc -p PID once its probes are in. bcc 0.26's Python binding calls
    bpf_attach_uprobe without its ref_ctr_offset argument, so memleak's uprobes carry a stray
    reference-counter offset, and the kernel refuses (EINVAL) uprobes at an address that
    another uprobe, still being freed after the previous run, holds with another one: retried."""
    for _attempt in range(10):
        ml = subprocess.Popen(
            ["memleak-bpfcc", "-p", str(pid), "5"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert ml.stdout is not None
        for line in ml.stdout:  # "Attaching to pid N, Ctrl+C to quit." before the probes
            if "Attaching" in line:
                break
        time.sleep(1.0)  # it prints before attaching; a failed attach exits by now
        if ml.poll() is None:

            def stop_memleak(ml: subprocess.Popen[str] = ml) -> None:
                ml.terminate()
                ml.wait()

            return stop_memleak
        ml.wait()
        time.sleep(1.0)
    raise RuntimeError("memleak-bpfcc could not attach its uprobes (EINVAL) ten times")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=2_000_000)
    ap.add_argument(
        "--micros",
        type=float,
        nargs="+",
        default=[3.0, 30.0],
        help="work between realistic calls (one realistic workload each, ~1.5 s unprofiled)",
    )
    ap.add_argument("--profilers", nargs="+", default=list(PROFILERS), choices=PROFILERS)
    args = ap.parse_args()
    if shutil.which("memleak-bpfcc") is None and "memleak" in args.profilers:
        args.profilers.remove("memleak")
        print("memleak-bpfcc not found: skipped")
    tmp = Path(tempfile.mkdtemp(prefix="heap-overhead-"))
    binary = build(tmp)
    workloads = {"pure": ["pure", str(args.calls)]}
    for micros in args.micros:
        spin = spin_for(binary, micros)
        calls = max(1000, int(1.5 / (micros * 1e-6)))
        workloads[f"real@{micros:g}us"] = ["realistic", str(calls), str(spin)]
    stats_file = Path("/proc/sys/kernel/bpf_stats_enabled")
    stats_before = stats_file.read_text().strip()
    stats_file.write_text("1")
    times: dict[tuple[str, str], list[float]] = {}
    walls: dict[tuple[str, str], list[float]] = {}
    bpf: dict[str, list[float]] = {}
    try:
        for r in range(args.rounds):
            for wname, wargs in workloads.items():
                for prof in args.profilers:
                    wall, cpu = run_once(binary, wargs, prof, tmp, bpf)
                    times.setdefault((wname, prof), []).append(cpu)
                    walls.setdefault((wname, prof), []).append(wall)
                    print(
                        f"round {r + 1} {wname:11} {prof:11} cpu {cpu:8.3f} s wall {wall:8.3f} s",
                        flush=True,
                    )
    finally:
        stats_file.write_text(stats_before)
    med = {k: statistics.median(v) for k, v in times.items()}
    wmed = {k: statistics.median(v) for k, v in walls.items()}
    print(f"\nmedians over {args.rounds} rounds; workload CPU seconds (utime+stime), wall in []")
    print("workloads: " + ", ".join(f"{w} = {' '.join(a)}" for w, a in workloads.items()))
    print(f"{'profiler':12}" + "".join(f"{w:>24}" for w in workloads))
    for prof in args.profilers:
        cells = []
        for w in workloads:
            c, wall, ratio = med[(w, prof)], wmed[(w, prof)], med[(w, prof)] / med[(w, "none")]
            cells.append(f"{c:8.3f} [{wall:7.3f}] {ratio:6.2f}x")
        print(f"{prof:12}" + "".join(f"{c:>24}" for c in cells))
    if {"floor", "sampled"} <= set(args.profilers):
        ratio = med[("pure", "sampled")] / med[("pure", "floor")]
        per_call = (med[("pure", "floor")] - med[("pure", "none")]) / (2 * args.calls) * 1e6
        print(f"\nsampled / floor, pure: {ratio:.3f} (target <= 1.15)")
        print(f"trap floor: {per_call:.2f} us per probed call (empty uprobe)")
        for w in workloads:
            if w != "pure":
                print(
                    f"sampled / none, {w}: {med[(w, 'sampled')] / med[(w, 'none')]:.3f}"
                    " (target <= 1.3)"
                )
    if "page_faults" in args.profilers:
        for w in workloads:
            print(
                f"page_faults / none, {w}: {med[(w, 'page_faults')] / med[(w, 'none')]:.3f}"
                " (target <= 1.02)"
            )
    if bpf:
        print("\nBPF run time per call (bpf_stats, median over runs of every workload):")
        for name, values in sorted(bpf.items()):
            print(f"  {name:32} {statistics.median(values):8.0f} ns")


if __name__ == "__main__":
    main()
