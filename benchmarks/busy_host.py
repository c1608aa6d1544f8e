"""Busy hosts (issue #16): many processes, an exec storm, the collector beside perf and bcc.

(a) ``many``: N processes of M distinct small binaries built here (each burns ~0.3 ms per 2 ms
    in its own ``hot_<i>``), profiled at 99 Hz by the collector, ``perf record -a -g`` and
    bcc's ``profile-bpfcc``, one after the other per round, rounds interleaved. Per profiler:
    samples of the workload, samples lost (each cause, as the tool reports it), the share of
    workload samples whose leaf is named as their own ``hot_<i>``, and the profiler's CPU.
(b) ``storm``: two parallel streams of ``gcc -O2 -c`` on a small file plus ``/bin/true``
    (3 per compile) until a fixed number of compiles is done, under no profiler, the
    collector and ``perf record -a -g``, interleaved: the storm's wall time as a ratio to no
    profiler, the collector's CPU during the storm, its RSS before, at peak (VmHWM) and
    ``--after`` seconds after the storm, and the share of cc1 samples with a named leaf.
(c) ``replay``: a 96-CPU host's 9,500 samples/s through symbolize -> windows -> pprof/OTLP
    with 1,000 and 5,000 live processes of 100 and 1,000 binaries (benchmarks/busy_replay.py;
    its arguments follow ``replay``).

Run as root after `make test` (or scripts/setup.sh test):
    .venv/bin/python benchmarks/busy_host.py many [--procs 200 --binaries 100 --seconds 30]
    .venv/bin/python benchmarks/busy_host.py storm [--compiles 300 --rounds 3 --after 60
        --warmup 200]
    .venv/bin/python benchmarks/busy_host.py replay [--configs 1000x100,5000x1000 --seconds 60]
    .venv/bin/python benchmarks/busy_host.py storm --against REV [--unwind auto --rounds 5
        --warmup 200]
``--unwind auto frame_pointers`` (the default for storm) runs the collector in both modes side
by side; ``many`` uses the first. ``--against REV`` runs this tree's collector and REV's at
once on the same storms (benchmarks/busy_ab.py).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from busy_ab import run_against
from busy_common import HERE, Collector, default_sigint
from busy_storm import run_storm
from procstat import cpu_seconds

BCC_PROFILE = shutil.which("profile-bpfcc") or "/usr/sbin/profile-bpfcc"
LOSS_KEYS = (
    "stack_lost",
    "user_stack_collision",
    "kernel_stack_collision",
    "user_stack_map_full",
    "kernel_stack_map_full",
    "user_stack_error",
    "kernel_stack_error",
    "ringbuf_full",
    "events_failed",
    "events_unread",
    "samples_dropped_memory_pressure",
)


WORKLOAD = r"""
#include <stdlib.h>
#include <time.h>
static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}
__attribute__((noinline)) void hot_%(i)d(double until) {
    volatile unsigned long x = 0;
    do { /* the clock is read seldom: the time is spent here, not in the vDSO */
        for (int k = 0; k < 20000; k++)
            x += %(i)d;
    } while (now() < until);
}
int main(int argc, char **argv) {
    double end = now() + atof(argv[1]);
    struct timespec nap = {0, 1700000};
    while (now() < end) {
        hot_%(i)d(now() + 0.0003);
        nanosleep(&nap, 0);
    }
    return 0;
}
"""


def _named_share(stacks: Counter[str], comm_re: str) -> tuple[int, int]:
    """(samples of the workload, of which the leaf is the process's own hot_<i>)."""
    total = named = 0
    pat = re.compile(comm_re)
    for stack, n in stacks.items():
        frames = stack.split(";")
        m = pat.fullmatch(frames[0])
        if not m:
            continue
        total += n
        if any(f == f"hot_{m.group(1)}" for f in frames[1:]):
            named += n
    return total, named


# ---- (a) many processes -----------------------------------------------------------------


def build_binaries(work: Path, count: int) -> list[Path]:
    bins = []
    for i in range(count):
        src = work / f"wl_{i}.c"
        src.write_text(WORKLOAD % {"i": i})
        out = work / f"wl_{i}"
        subprocess.run(["gcc", "-O1", "-g", "-o", str(out), str(src)], check=True)
        bins.append(out)
    return bins


def spawn_many(bins: list[Path], procs: int) -> list[subprocess.Popen[bytes]]:
    # They outlive the window: every profiler is stopped while they still run, so one that
    # symbolizes only at exit (bcc's profile) is not measured on processes already gone.
    return [subprocess.Popen([str(bins[i % len(bins)]), "600"]) for i in range(procs)]


def window(workers: list[subprocess.Popen[bytes]], pid: int, seconds: float) -> float:
    """The profiler's CPU seconds per wall second while the workers run ``seconds``; then
    the workers are stopped (SIGSTOP: alive, so still nameable, but no longer competing with
    the profiler's shutdown for the CPUs: 200 runnable tasks leave it 1 % of them)."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    cpu = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
    for w in workers:
        w.send_signal(signal.SIGSTOP)
    return cpu


def end_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        w.kill()
    for w in workers:
        w.wait()


def many_collector(args: argparse.Namespace, work: Path, bins: list[Path]) -> dict[str, float]:
    col = Collector(work, args.unwind[0], "many")
    pid = col.start()
    workers = spawn_many(bins, args.procs)
    time.sleep(1.0)
    cpu = window(workers, pid, args.seconds)
    totals = col.stop()
    end_workers(workers)
    total, named = _named_share(col.folded(), r"wl_(\d+)")
    lost = {k: totals.get(k, 0) for k in LOSS_KEYS if totals.get(k, 0)}
    return {
        "samples": total,
        "lost": sum(lost.values()),
        "named": named / max(1, total),
        "cpu": cpu,
        "causes": lost,  # type: ignore[dict-item]
    }


def many_perf(args: argparse.Namespace, work: Path, bins: list[Path]) -> dict[str, float]:
    data = work / "perf.data"
    perf_log = (work / "perf.log").open("w")
    rec = subprocess.Popen(
        ["perf", "record", "-a", "-g", "-F", "99", "-o", str(data)],
        stdout=perf_log,
        stderr=perf_log,
        preexec_fn=default_sigint,
    )
    workers = spawn_many(bins, args.procs)
    time.sleep(1.0)
    cpu = window(workers, rec.pid, args.seconds)
    rec.send_signal(signal.SIGINT)
    rec.wait(120)
    end_workers(workers)
    script = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "comm,ip,sym"],
        capture_output=True,
        text=True,
    ).stdout
    stacks: Counter[str] = Counter()
    for block in script.split("\n\n"):
        lines = [ln.strip() for ln in block.strip().splitlines()]
        if lines:
            syms = [[*ln.split(None, 1), "[unknown]"][1] for ln in lines[1:]]
            stacks[";".join([lines[0].split()[0], *reversed(syms)])] += 1
    stats = subprocess.run(
        ["perf", "report", "-i", str(data), "--stats"], capture_output=True, text=True
    ).stdout
    m = re.search(r"LOST events:\s+(\d+)", stats)
    lost_events = int(m.group(1)) if m else 0
    total, named = _named_share(stacks, r"wl_(\d+)")
    if not total:
        print("perf recorded nothing of the workload:", (work / "perf.log").read_text()[-2000:])
    data.unlink(missing_ok=True)
    return {
        "samples": total,
        "lost": lost_events,
        "named": named / max(1, total),
        "cpu": cpu,
        "causes": {"lost_events": lost_events} if lost_events else {},  # type: ignore[dict-item]
    }


def many_bcc(args: argparse.Namespace, work: Path, bins: list[Path]) -> dict[str, float]:
    out = work / "bcc.folded"
    err = work / "bcc.err"
    with out.open("w") as o, err.open("w") as e:
        prof = subprocess.Popen(
            [BCC_PROFILE, "-F", "99", "-f"], stdout=o, stderr=e, preexec_fn=default_sigint
        )
        # With -f bcc prints nothing until it exits: give its compile (~3 s here) room.
        time.sleep(10.0)
        if prof.poll() is not None:
            raise SystemExit(f"profile-bpfcc failed:\n{err.read_text()}")
        workers = spawn_many(bins, args.procs)
        time.sleep(1.0)
        cpu = window(workers, prof.pid, args.seconds)
        prof.send_signal(signal.SIGINT)
        prof.wait(300)
        end_workers(workers)
    stacks: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            stacks[stack] += int(n)
    lost = sum(
        int(x) for x in re.findall(r"(\d+) stack traces? (?:lost|could not)", err.read_text())
    )
    total, named = _named_share(stacks, r"wl_(\d+)")
    return {
        "samples": total,
        "lost": lost,
        "named": named / max(1, total),
        "cpu": cpu,
        "causes": {"stacks_lost": lost} if lost else {},  # type: ignore[dict-item]
    }


def run_many(args: argparse.Namespace, work: Path) -> None:
    bins = build_binaries(work, args.binaries)
    modes = {"collector": many_collector, "perf": many_perf, "bcc-profile": many_bcc}
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    names = list(modes)
    for r in range(args.rounds):
        for mode in names[r % 3 :] + names[: r % 3]:
            res = modes[mode](args, work, bins)
            results[mode].append(res)
            print(f"round {r + 1} {mode:<12} {res}", flush=True)
    print(
        f"\n(a) {args.procs} processes of {args.binaries} binaries, {args.seconds:.0f} s, "
        f"99 Hz, collector unwind={args.unwind[0]}, {args.rounds} rounds (median)"
    )
    print(f"{'':<13}{'samples':>9}{'lost':>7}{'lost %':>8}{'named %':>9}{'CPU %core':>11}")
    for mode in names:
        rs = results[mode]
        samples = statistics.median(x["samples"] for x in rs)
        lost = statistics.median(x["lost"] for x in rs)
        named = statistics.median(x["named"] for x in rs) * 100
        cpu = statistics.median(x["cpu"] for x in rs) * 100
        pct = 100 * lost / max(1, samples + lost)
        print(f"{mode:<13}{samples:>9.0f}{lost:>7.0f}{pct:>8.2f}{named:>9.1f}{cpu:>11.2f}")


def main() -> None:
    if sys.argv[1:2] == ["replay"]:  # no BPF: its own arguments (benchmarks/busy_replay.py)
        os.execv(sys.executable, [sys.executable, str(HERE / "busy_replay.py"), *sys.argv[2:]])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["many", "storm", "replay"])
    ap.add_argument(
        "--unwind",
        nargs="+",
        default=["auto", "frame_pointers"],
        choices=["frame_pointers", "auto", "auto-nodwarf"],
        help="collector modes, side by side (many: the first only); auto-nodwarf: auto with "
        "symbolize dwarf_lines off",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--procs", type=int, default=200)
    ap.add_argument("--binaries", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--compiles", type=int, default=300)
    ap.add_argument("--after", type=float, default=60.0)
    ap.add_argument(
        "--warmup",
        type=int,
        default=0,
        help="storm: compiles each collector runs before the measured storm (a long-running "
        "collector has the compilers' symbols and tables already; 0: a fresh one)",
    )
    ap.add_argument(
        "--against",
        metavar="REV",
        help="storm: this tree's collector and REV's (git archive), both running at once on "
        "the same storms (the first --unwind mode); prints the CPU ratio",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the profilers load BPF programs")
    work = Path(tempfile.mkdtemp(prefix="busy-host-"))
    try:
        if args.what == "storm" and args.against:
            run_against(args, work)
        else:
            (run_many if args.what == "many" else run_storm)(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
