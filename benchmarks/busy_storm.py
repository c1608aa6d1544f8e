"""Busy hosts (issue #16), part (b): the exec storm. Two parallel streams of ``gcc -O2 -c`` on
a small file plus ``/bin/true`` (3 per compile) until a fixed number of compiles is done, under
no profiler, the collector and ``perf record -a -g``, interleaved. Run through
``benchmarks/busy_host.py storm`` (its arguments)."""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import time
from pathlib import Path

from busy_common import Collector, default_sigint, status_mb
from procstat import cpu_seconds, thread_cpu

# The collector's own totals for the storm table: what the unwind worker did per process.
STORM_TOTALS = (
    "unwind_queued",
    "unwind_processes_loaded",
    "unwind_skipped_exited",
    "unwind_tables_built",
    "unwind_tables_from_cache",
    "unwind_worker_cpu_ms",
    "unwind_budget_waits",
)
SMALL_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct item { char name[32]; int weight; };
static int cmp(const void *a, const void *b) {
    return ((const struct item *)a)->weight - ((const struct item *)b)->weight;
}
int sort_items(struct item *items, int n) {
    int total = 0;
    for (int i = 0; i < n; i++) total += items[i].weight * (int)strlen(items[i].name);
    qsort(items, n, sizeof(*items), cmp);
    return total;
}
"""


def storm(work: Path, compiles: int) -> float:
    """Two streams, each compiling compiles/2 times with 3 /bin/true per compile: seconds."""
    src = work / "small.c"
    src.write_text(SMALL_C)
    script = (
        'i=0; while [ "$i" -lt "$1" ]; do gcc -O2 -c "$2" -o "$3"; '
        "/bin/true; /bin/true; /bin/true; i=$((i+1)); done"
    )
    t0 = time.monotonic()
    streams = [
        subprocess.Popen(
            ["sh", "-c", script, "sh", str(compiles // 2), str(src), str(work / f"o{k}.o")]
        )
        for k in range(2)
    ]
    for s in streams:
        s.wait()
    return time.monotonic() - t0


def storm_round(args: argparse.Namespace, work: Path, mode: str) -> dict[str, float]:
    if mode == "none":
        return {"seconds": storm(work, args.compiles)}
    if mode == "perf":
        data = work / "storm-perf.data"
        rec = subprocess.Popen(
            ["perf", "record", "-a", "-g", "-F", "99", "-o", str(data)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=default_sigint,
        )
        time.sleep(1.0)
        c0 = cpu_seconds(rec.pid)
        secs = storm(work, args.compiles)
        c1 = cpu_seconds(rec.pid)
        rec.send_signal(signal.SIGINT)
        rec.wait(120)
        data.unlink(missing_ok=True)
        return {"seconds": secs, "cpu": (c1 - c0) / secs}
    unwind = mode.split("/", 1)[1]
    col = Collector(work, unwind, "storm")
    pid = col.start()
    time.sleep(2.0)
    if args.warmup:
        storm(work, args.warmup)
        time.sleep(2.0)
    before = status_mb(pid, "VmRSS")
    c0, t0 = cpu_seconds(pid), thread_cpu(pid)
    secs = storm(work, args.compiles)
    c1, t1 = cpu_seconds(pid), thread_cpu(pid)
    threads = {k: (t1.get(k, 0.0) - t0.get(k, 0.0)) / secs for k in ("cpu-reader", "cpu-unwind")}
    peak = status_mb(pid, "VmHWM")
    end = status_mb(pid, "VmRSS")
    time.sleep(args.after)
    after = status_mb(pid, "VmRSS")
    totals = col.stop()
    stacks = col.folded()
    cc1 = sum(n for s, n in stacks.items() if s.startswith("cc1;"))
    named = sum(
        n for s, n in stacks.items() if s.startswith("cc1;") and "+0x" not in s.rsplit(";", 1)[-1]
    )
    return {
        "seconds": secs,
        "cpu": (c1 - c0) / secs,
        "rss_before": before,
        "rss_peak": peak,
        "rss_end": end,
        "rss_after": after,
        "cc1_named": named / max(1, cc1),
        "reader_cpu": threads["cpu-reader"],
        "worker_cpu": threads["cpu-unwind"],
        **{k: totals.get(k, 0) for k in STORM_TOTALS},  # whole run, not only the storm
    }


def run_storm(args: argparse.Namespace, work: Path) -> None:
    modes = ["none", *(f"collector/{u}" for u in args.unwind), "perf"]
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for r in range(args.rounds):
        k = r % len(modes)
        for mode in modes[k:] + modes[:k]:
            res = storm_round(args, work, mode)
            results[mode].append(res)
            print(f"round {r + 1} {mode:<10} " + " ".join(f"{k}={v:.4g}" for k, v in res.items()))
    base = [x["seconds"] for x in results["none"]]
    print(
        f"\n(b) exec storm: {args.compiles} compiles + {3 * args.compiles} /bin/true in two "
        f"streams, 99 Hz, {args.rounds} rounds (median, range); collectors warmed up with "
        f"{args.warmup} compiles"
    )
    for mode in modes:
        ratios = [x["seconds"] / statistics.median(base) for x in results[mode]]
        spread = f"({min(ratios):.2f}-{max(ratios):.2f})"
        line = f"{mode:<10} time x{statistics.median(ratios):.3f} {spread}"
        if mode != "none":
            line += f" CPU {100 * statistics.median(x['cpu'] for x in results[mode]):.2f} %core"
            per = statistics.median(x["cpu"] * x["seconds"] for x in results[mode])
            line += f" = {1000 * per / args.compiles:.2f} ms per compile"
        if mode.startswith("collector"):
            rs = results[mode]
            for k in ("rss_before", "rss_peak", "rss_end", "rss_after"):
                line += f" {k}={statistics.median(x[k] for x in rs):.1f}MB"
            line += f" cc1_named={100 * statistics.median(x['cc1_named'] for x in rs):.1f}%"
            for k in ("reader_cpu", "worker_cpu"):
                line += f" {k}={100 * statistics.median(x[k] for x in rs):.2f}%"
            for k in STORM_TOTALS:
                line += f" {k}={statistics.median(x[k] for x in rs):.0f}"
        print(line)
    print(f"(rss_after: {args.after:.0f} s after the storm ended)")
