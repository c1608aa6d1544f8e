"""Busy hosts, the exec storm side by side: this tree's collector and another revision's
(``git archive REV``), both running at once and profiling the same storms, so that the load of
the machine, which moves a one-collector round by ±20 %, moves both alike. Run through
``benchmarks/busy_host.py storm --against REV`` (its ``--unwind`` first mode, ``--compiles``,
``--rounds``, ``--warmup``)."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

from busy_common import ROOT, Collector, status_mb
from busy_storm import storm
from procstat import cpu_seconds, thread_cpu

THREADS = ("cpu-reader", "cpu-unwind")
# Neither collector names the other's samples (threads: the CLI's "collector" or the other
# tree's "python", the reader and the worker): each sees the other's process once (its first
# sample comes before the comm filter, as every process's does), never its libraries' DWARF.
NOT_A_COLLECTOR = r"^(?!(collector|python|cpu-reader|cpu-unwind)$)"


def _extract(rev: str, into: Path) -> None:
    into.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def _usage(pid: int) -> dict[str, float]:
    threads = thread_cpu(pid)
    return {"cpu": cpu_seconds(pid), **{t: threads.get(t, 0.0) for t in THREADS}}


def run_against(args: argparse.Namespace, work: Path) -> None:
    tree = work / "against"
    _extract(args.against, tree)
    unwind = args.unwind[0]
    cols = {
        "this": Collector(work, unwind, "this", comm=NOT_A_COLLECTOR),
        args.against: Collector(work, unwind, "against", tree=tree, comm=NOT_A_COLLECTOR),
    }
    pids = {name: col.start() for name, col in cols.items()}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in cols}
    try:
        time.sleep(2.0)
        if args.warmup:
            storm(work, args.warmup)
            time.sleep(2.0)
        for r in range(args.rounds):
            before = {name: _usage(pid) for name, pid in pids.items()}
            secs = storm(work, args.compiles)
            for name, pid in pids.items():
                after = _usage(pid)
                res = {k: (after[k] - before[name][k]) / secs for k in after}
                res["rss"] = status_mb(pid, "VmRSS")
                results[name].append(res)
            line = " ".join(f"{name}: cpu={100 * results[name][-1]['cpu']:.2f}%" for name in cols)
            print(f"round {r + 1} storm {secs:.1f} s  {line}", flush=True)
            time.sleep(1.0)
        peaks = {name: status_mb(pid, "VmHWM") for name, pid in pids.items()}
    finally:
        totals = {name: col.stop() for name, col in cols.items()}
    shares = {name: _cc1_shares(col) for name, col in cols.items()}
    print(
        f"\nexec storm side by side: {args.compiles} compiles + {3 * args.compiles} /bin/true, "
        f"unwind {unwind}, 99 Hz, {args.rounds} rounds after {args.warmup} warm-up compiles; "
        "% of a core during the storm (median of rounds)"
    )
    print(f"{'':<14}{'collector':>10}{'reader':>9}{'worker':>9}{'RSS MB':>9}{'peak MB':>9}")
    med = {
        name: {k: statistics.median(x[k] for x in rs) for k in rs[0]}
        for name, rs in results.items()
    }
    for name, m in med.items():
        print(
            f"{name[:14]:<14}{100 * m['cpu']:>10.2f}{100 * m['cpu-reader']:>9.2f}"
            f"{100 * m['cpu-unwind']:>9.2f}{m['rss']:>9.1f}{peaks[name]:>9.1f}"
        )
    for name, (cc1, main, not_loaded) in shares.items():
        print(
            f"{name[:14]:<14}cc1 samples {cc1}: {100 * main / max(1, cc1):.1f} % reach main, "
            f"{100 * not_loaded / max(1, cc1):.1f} % end no_process (whole run, warm-up too); "
            f"perf samples {totals[name].get('perf_samples', 0)}, lost "
            f"{totals[name].get('ringbuf_full', 0)}, stack copies "
            f"{totals[name].get('unwind_copies_held', 0)}"
        )
        copies = {
            k.removeprefix("unwind_"): v
            for k, v in totals[name].items()
            if k.startswith("unwind_copies_")
        }
        if copies:
            print(f"{'':<14}copies: " + ", ".join(f"{k} {v}" for k, v in sorted(copies.items())))
    this, base = med["this"], med[args.against]
    pairs = zip(results["this"], results[args.against], strict=True)
    ratios = [a["cpu"] / max(1e-9, b["cpu"]) for a, b in pairs]
    print(
        f"this / {args.against}: collector {this['cpu'] / max(1e-9, base['cpu']):.3f} "
        f"(rounds {min(ratios):.3f}-{max(ratios):.3f}), reader "
        f"{this['cpu-reader'] / max(1e-9, base['cpu-reader']):.3f}, worker "
        f"{this['cpu-unwind'] / max(1e-9, base['cpu-unwind']):.3f}"
    )


def _cc1_shares(col: Collector) -> tuple[int, int, int]:
    """cc1's samples, those whose stack reaches main, those walked before cc1 was loaded."""
    stacks = {s: n for s, n in col.folded().items() if s.startswith("cc1;")}
    main = sum(n for s, n in stacks.items() if ";main;" in s)
    not_loaded = sum(n for s, n in stacks.items() if "[unwind stopped: no_process]" in s)
    return sum(stacks.values()), main, not_loaded
