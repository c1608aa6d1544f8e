"""Flame graph files for a big window: generation time and size, beside the folded encoder.

A ProfileSet of ``--stacks`` distinct stacks (default 100,000; 8-40 frames, random walks in a
call graph of 3,000 C++-style functions with 8 callees each, 20 % ending in 2-6 kernel
frames, 4 processes) is rendered as the flamegraph exporter renders a window: the tree
(build, prune to max_nodes, diff against a previous window), the HTML page, the SVG. Two call
graphs: "skewed", where a function calls its first callees far more often than the others
(Zipf weights), so stacks share long prefixes as real ones do; and "uniform", every callee
equally likely, so stacks part early: the worst case, ~21 distinct frames per stack. The
folded encoder runs on the same ProfileSet in the same process as the reference.

    .venv/bin/python benchmarks/flamegraph_size.py [--stacks 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.encoding import encode_folded
from collector.model import (
    FRAME_KERNEL,
    Function,
    Line,
    Location,
    Mapping,
    ProcessInfo,
    ProfileBuilder,
    ProfileSet,
    Sample,
    Stack,
    cpu_profile_type,
)
from exporters.flamegraph import html, svg
from exporters.flamegraph.config import FlamegraphConfig
from exporters.flamegraph.tree import Tree, build, diff, prune

T0 = 1_700_000_000_000_000_000
DEFAULT_MAX_NODES = FlamegraphConfig.model_fields["max_nodes"].default


def make_set(n_stacks: int, seed: int, skewed: bool) -> ProfileSet:
    rnd = random.Random(seed)
    exe = Mapping(0x400000, 0x4000000, 0, "/usr/bin/server", "ab" * 20)
    kmap = Mapping(0, 0, 0, "[kernel.kallsyms]")
    words = ["Request", "Handler", "Cache", "Index", "Parse", "Encode", "Queue", "Store"]
    funcs = [
        Location(
            exe,
            0x400000 + i * 64,
            (Line(Function(f"app::{rnd.choice(words)}{i}::{rnd.choice(words).lower()}_{i}")),),
        )
        for i in range(3000)
    ]
    kfuncs = [
        Location(kmap, 0xFFFFFFFF81000000 + i * 64, (Line(Function(f"kfunc_{i}")),), FRAME_KERNEL)
        for i in range(200)
    ]
    callees = [rnd.sample(range(3000), 8) for _ in range(3000)]
    weights = [1 / (k + 1) ** 2 for k in range(8)] if skewed else [1.0] * 8
    procs = [ProcessInfo(1000 + i, f"server{i}", f"/usr/bin/server{i}") for i in range(4)]
    seen: set[tuple[Location, ...]] = set()
    b = ProfileBuilder(cpu_profile_type(99), max_samples=10 * n_stacks)
    while len(seen) < n_stacks:
        depth = rnd.randint(8, 40)
        f = rnd.randrange(16)  # a few entry points, so the tops are shared
        path = [funcs[f]]
        for _ in range(depth - 1):
            f = rnd.choices(callees[f], weights)[0]
            path.append(funcs[f])
        if rnd.random() < 0.2:
            path += rnd.sample(kfuncs, rnd.randint(2, 6))
        frames = tuple(reversed(path))  # leaf first
        if frames in seen:
            continue
        seen.add(frames)
        proc = procs[rnd.randrange(len(procs))]
        value = 1 + int(rnd.expovariate(0.2))
        b.add(Sample(Stack(frames), proc, proc.pid, 0, proc.executable_name, T0, value))
    return b.build(T0, T0 + 10_000_000_000)


def timed(fn: Callable[[], object], rounds: int) -> tuple[float, object]:
    times = []
    out: object = None
    for _ in range(rounds):
        t = time.process_time()
        out = fn()
        times.append(time.process_time() - t)
    return statistics.median(times), out


def peak_mb(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stacks", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"{args.stacks} distinct stacks per window; CPU seconds, medians of {args.rounds}")
    print()
    print("| call graph | max_nodes | frames kept (of all) | tree s | HTML s | SVG s | total s "
          "| total / folded | HTML MB | SVG MB | peak MB |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for skewed in (True, False):
        current = make_set(args.stacks, 1, skewed)
        previous = make_set(args.stacks, 2, skewed)
        folded_s, _ = timed(lambda: encode_folded(current), args.rounds)  # noqa: B023
        for max_nodes in (DEFAULT_MAX_NODES, 10**9):
            prev_tree = build(previous)
            prune(prev_tree, max_nodes)

            def tree_step(max_nodes: int = max_nodes, prev: Tree = prev_tree) -> Tree:
                t = build(current)  # noqa: B023
                prune(t, max_nodes)
                diff(t, prev)
                return t

            def all_steps(step: Callable[[], Tree] = tree_step) -> None:
                t = step()
                html.render(current, t, "bench", "previous")  # noqa: B023
                svg.render(current, t, "bench")  # noqa: B023

            tree_s, tree = timed(tree_step, args.rounds)
            assert isinstance(tree, Tree)
            html_s, page = timed(lambda: html.render(current, tree, "b", "p"), args.rounds)  # noqa: B023
            svg_s, image = timed(lambda: svg.render(current, tree, "b"), args.rounds)  # noqa: B023
            assert isinstance(page, bytes) and isinstance(image, bytes)
            total = tree_s + html_s + svg_s
            print(
                f"| {'skewed' if skewed else 'uniform'} "
                f"| {max_nodes if max_nodes < 10**9 else 'no limit'} "
                f"| {tree.nodes:,} ({tree.nodes + tree.pruned:,}) | {tree_s:.2f} | {html_s:.2f} "
                f"| {svg_s:.2f} | {total:.2f} | {total / folded_s:.1f}x "
                f"| {len(page) / 1e6:.1f} | {len(image) / 1e6:.2f} | {peak_mb(all_steps):.0f} |"
            )


if __name__ == "__main__":
    main()
