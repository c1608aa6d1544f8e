"""The symbolizer's cost per frame of a new stack (issue #16): what an exec storm pays, where
every process is new, so every stack misses its process's stack cache while the binaries'
line caches are warm.

This process's own executable mappings (libc, libpython, ... with their .symtab and, where
installed, DWARF) give 3,000 addresses: 1,000 leaves and 2,000 return addresses. Each batch is
200 stacks of 30 frames (one leaf, 29 returns) drawn at random, so every stack is new. After
a warm-up that resolves every address once, 5 rounds of 100 batches; the best round is the
figure (CPU µs per frame). With ``--against DIR`` (another checkout, e.g. ``git archive HEAD~1
| tar -x -C DIR``) both trees run alternately in fresh children and the ratio is printed.

    .venv/bin/python benchmarks/symbolize_frames.py [--against DIR] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure() -> float:
    sys.path.insert(0, os.getcwd())  # the tree under test (the child runs in it)
    from collector.host import Host
    from collector.model import RawBatch, RawSample, cpu_profile_type
    from processors.symbolize import SymbolizeConfig, Symbolizer

    host = Host()
    sym = Symbolizer(host.processes, SymbolizeConfig(), host.counters)
    pid = os.getpid()
    snap = host.processes.observe(pid)
    assert snap is not None
    ranges = [r for r in snap.mappings if r.path and r.end - r.start > 100_000]
    rnd = random.Random(3)
    picks = [rnd.choice(ranges) for _ in range(3000)]
    addrs = [r.start + rnd.randrange(r.end - r.start) for r in picks]
    leaves, returns = addrs[:1000], addrs[1000:]
    pt = cpu_profile_type(99)

    def batch() -> RawBatch:
        samples = [
            RawSample(
                pid, pid, 0, "x", time.time_ns(), 1,
                tuple(rnd.choices(leaves, k=1) + rnd.choices(returns, k=29)),
            )
            for _ in range(200)
        ]  # fmt: skip
        return RawBatch(pt, samples, "cpu")

    for _ in range(30):  # every address resolved once: the line caches are warm
        sym.symbolize(batch())
    best = []
    for _ in range(5):
        batches = [batch() for _ in range(100)]
        t0 = time.process_time()
        for b in batches:
            sym.symbolize(b)
        best.append(time.process_time() - t0)
    return min(best) / (100 * 200 * 30) * 1e6


def child(tree: Path) -> float:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(json.loads(out.splitlines()[-1])["us_per_frame"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", type=Path, help="another checkout, run alternately")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps({"us_per_frame": measure()}))
        return
    trees = {"this": ROOT} | ({"against": args.against} if args.against else {})
    got: dict[str, list[float]] = {k: [] for k in trees}
    for r in range(args.rounds):
        for name in list(trees)[r % len(trees) :] + list(trees)[: r % len(trees)]:
            got[name].append(child(trees[name]))
            print(f"round {r + 1} {name:<8} {got[name][-1]:.2f} us/frame", flush=True)
    for name, xs in got.items():
        print(
            f"{name:<8} median {statistics.median(xs):.2f} us/frame ({min(xs):.2f}-{max(xs):.2f})"
        )
    if args.against:
        ratio = statistics.median(got["this"]) / statistics.median(got["against"])
        print(f"this / against: {ratio:.2f}")


if __name__ == "__main__":
    main()
