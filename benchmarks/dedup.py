"""One deduplication per pipeline and one symbolizer per collector, against the old layout.

Two pipelines (cpu and off_cpu, as `cpu` + `offcpu` receivers give) each feed the exporters
folded and pprof. Samples are raw addresses in this very process (python, libc, the loaded
extension modules, ~400 distinct stacks 8-30 frames deep, some with kernel frames from
/proc/kallsyms), symbolized for real, deduplicated and encoded by both exporters' encoders:
  - old: one Symbolizer per pipeline (kallsyms and every binary loaded twice) and one
         ProfileWindows per exporter (every sample deduplicated once per exporter);
  - new: one Symbolizer shared through the host (processors/symbolize/shared.py) and one
         window per pipeline whose ProfileSet both encoders read (collector/pipeline).
Each mode runs in a fresh child process (so peak RSS is its own); modes alternate rounds.
Printed: CPU ms per 10k samples for the first window (tables loading) and in steady state,
the deduplication share of it, and peak RSS; then how long the event loop stalls when a
window is deduplicated on the loop vs in the WindowStage's worker thread.

    sudo .venv/bin/python benchmarks/dedup.py [--rounds 3] [--windows 6] [--samples 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.encoding import encode_folded, encode_pprof
from collector.host import Host
from collector.model import (
    ProfileType,
    ProfileWindows,
    RawBatch,
    RawSample,
    WindowSettings,
    cpu_profile_type,
)
from collector.pipeline.windowing import WindowStage
from collector.telemetry import Counters
from processors.symbolize import SymbolizeConfig, Symbolizer
from processors.symbolize.shared import acquire

CPU = cpu_profile_type(99)
OFF_CPU = ProfileType("off_cpu", "off_cpu", "nanoseconds")
log = logging.getLogger("dedup")


def _text_ranges() -> list[tuple[int, int]]:
    """Executable file mappings of this process (python, libc, extension modules)."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and "x" in parts[1] and parts[5].startswith("/"):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi))
    return out


def _kernel_addresses() -> list[int]:
    addrs = []
    with open("/proc/kallsyms") as f:
        for line in f:
            addr, kind = line.split()[:2]
            if kind in "tT" and int(addr, 16):
                addrs.append(int(addr, 16) + 4)
    return addrs


def make_batches(n: int, windows: int, seed: int = 11) -> list[list[RawBatch]]:
    """Per window: a cpu and an off_cpu batch of ``n`` samples each, same stacks."""
    rnd = random.Random(seed)
    ranges = _text_ranges()
    kernel = _kernel_addresses()
    frames = [lo + rnd.randrange(hi - lo) for lo, hi in rnd.choices(ranges, k=3000)]
    stacks = []
    for _ in range(400):
        user = tuple(rnd.sample(frames, rnd.randrange(8, 30)))
        kern = (
            tuple(rnd.sample(kernel, rnd.randrange(1, 6))) if kernel and rnd.random() < 0.3 else ()
        )
        stacks.append((user, kern))
    weights = [1 / (i + 1) for i in range(len(stacks))]
    pid, now = os.getpid(), time.time_ns()
    out = []
    for w in range(windows):
        pair = []
        for pt in (CPU, OFF_CPU):
            samples = []
            for i in range(n):
                user, kern = rnd.choices(stacks, weights)[0]
                tid = pid + rnd.randrange(8)
                value = 1 if pt is CPU else rnd.randrange(1000, 10**6)
                samples.append(
                    RawSample(
                        pid, tid, i % 2, f"w{tid % 8}", now + w * 10**10 + i, value, user, kern
                    )
                )
            pair.append(RawBatch(pt, samples))
        out.append(pair)
    return out


def run_mode(mode: str, n: int, windows: int) -> dict[str, object]:
    batches = make_batches(n, windows)
    config = SymbolizeConfig()
    host = Host()
    if mode == "old":
        syms = [Symbolizer(host.processes, config, Counters(), f"symbolize{i}") for i in (0, 1)]
        symbolize = [s.symbolize for s in syms]
        per_exporter = 2  # folded and pprof each keep their own ProfileWindows
    else:
        _, shared = acquire(host, config, "symbolize", log)
        symbolize = [lambda b: shared.run(shared.symbolizer.symbolize, b)] * 2
        per_exporter = 1  # one window per pipeline, read by both encoders
    host.processes.observe(os.getpid())
    windows_of = [[ProfileWindows(10**7) for _ in range(per_exporter)] for _ in (0, 1)]
    cpu_ms, dedup_ms = [], []
    for pair in batches:
        t0 = time.process_time()
        dedup = 0.0
        for p, raw in enumerate(pair):
            sym = symbolize[p](raw)
            t = time.process_time()
            sets = []
            for w in windows_of[p]:
                w.add(sym)
                sets.extend(w.close_all())
            dedup += time.process_time() - t
            if len(sets) == 1:
                sets = sets * 2  # new: the same ProfileSet object for both encoders
            encode_folded(sets[0])
            encode_pprof(sets[1])
        cpu_ms.append((time.process_time() - t0) * 1000)
        dedup_ms.append(dedup * 1000)
    total = 2 * n  # samples per window, both pipelines
    scale = 10_000 / total
    return {
        "first_ms": cpu_ms[0] * scale,
        "steady_ms": statistics.median(cpu_ms[1:]) * scale,
        "dedup_ms": statistics.median(dedup_ms[1:]) * scale,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def loop_stall(n: int, rounds: int = 5) -> dict[str, float]:
    """The event loop's longest gap (ms) while a window of ``n`` samples is deduplicated and
    closed on the loop itself vs by the pipeline's WindowStage (worker thread)."""
    raw = make_batches(n, 1)[0][0]
    host = Host()
    host.processes.observe(os.getpid())
    batch = Symbolizer(host.processes, SymbolizeConfig(), Counters()).symbolize(raw)

    async def worst(work) -> float:  # type: ignore[no-untyped-def]
        gaps = [0.0]
        done = asyncio.Event()

        async def tick() -> None:
            last = time.perf_counter()
            while not done.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        ticker = asyncio.create_task(tick())
        await asyncio.sleep(0.01)
        await work()
        done.set()
        await ticker
        return max(gaps) * 1000

    async def inline() -> None:
        w = ProfileWindows(10**7)
        w.add(batch)
        w.close_all()

    async def staged() -> None:
        async def sink(ps: object) -> None:
            return None

        stage = WindowStage("bench", WindowSettings(3600), sink)
        await stage.add(batch)
        await stage.shutdown()

    out: dict[str, list[float]] = {"inline": [], "thread": []}
    for _ in range(rounds):
        out["inline"].append(asyncio.run(worst(inline)))
        out["thread"].append(asyncio.run(worst(staged)))
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--windows", type=int, default=6)
    ap.add_argument("--samples", type=int, default=10_000, help="per window and pipeline")
    ap.add_argument("--child", choices=["old", "new"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(run_mode(a.child, a.samples, a.windows)))
        return
    stall = loop_stall(a.samples)
    results: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for _ in range(a.rounds):
        for mode in ("old", "new"):
            args = [sys.executable, __file__, "--child", mode, "--samples", str(a.samples)]
            out = subprocess.run(
                [*args, "--windows", str(a.windows)], capture_output=True, text=True
            )
            if out.returncode:
                sys.exit(f"{mode} failed:\n{out.stderr}")
            results[mode].append(json.loads(out.stdout.splitlines()[-1]))
    print(
        f"2 pipelines (cpu, off_cpu) x 2 exporters (folded, pprof), {a.samples} samples per "
        f"window and pipeline, {a.windows} windows, medians of {a.rounds} rounds; "
        "CPU ms per 10k samples"
    )
    rows = [
        ("first window (loads tables)", "first_ms"),
        ("steady window", "steady_ms"),
        ("  of which deduplication", "dedup_ms"),
        ("peak RSS MB", "peak_rss_mb"),
    ]
    print(f"{'':30} {'old':>9} {'new':>9} {'new/old':>8}")
    for label, key in rows:
        old = statistics.median(r[key] for r in results["old"])
        new = statistics.median(r[key] for r in results["new"])
        print(f"{label:30} {old:9.1f} {new:9.1f} {new / old:8.2f}")
    print(
        f"event loop's longest gap while {a.samples} samples are deduplicated and closed: "
        f"{stall['inline']:.1f} ms on the loop, {stall['thread']:.1f} ms in a worker thread"
    )


if __name__ == "__main__":
    main()
