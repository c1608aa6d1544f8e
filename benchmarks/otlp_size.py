"""OTLP profiles on the wire: bytes per sample and encode CPU, against a gzip pprof file.

One realistic ProfileSet (a 10 s window of 99 Hz samples from several processes and threads,
hundreds of distinct stacks 8-40 frames deep, kernel + native frames) is encoded as:
  - the OTLP ExportProfilesServiceRequest, serialized, with and without gzip;
  - the pprof file the pprof exporter writes (collector.encoding.pprof, gzip level 6).
OTLP keeps a timestamp per sample (8 bytes each before compression); pprof sums values.

    .venv/bin/python benchmarks/otlp_size.py [--samples 10000] [--stacks 400] [--rounds 5]
"""

from __future__ import annotations

import argparse
import gzip
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.encoding.pprof import encode_pprof
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
from collector.otlp import encode_profile_set

T0 = 1_700_000_000_000_000_000


def make_samples(n: int, n_stacks: int, seed: int = 7) -> list[Sample]:
    rnd = random.Random(seed)
    kmap = Mapping(0, 0, 0, "[kernel.kallsyms]")
    kfuncs = [
        Location(kmap, 0xFFFFFFFF81000000 + i * 64, (Line(Function(f"kfunc_{i}")),), FRAME_KERNEL)
        for i in range(60)
    ]
    libs = [
        Mapping(
            0x7F0000000000 + (i << 24),
            (0x7F0000000000 + (i << 24)) + 0x200000,
            0,
            f"/usr/lib/x86_64-linux-gnu/lib{i}.so",
            f"{i:02x}" * 20,
        )
        for i in range(8)
    ]
    locs: list[Location] = []
    for i in range(1500):
        m = libs[i % len(libs)]
        fn = Function(f"ns{i % 37}::Class{i % 91}::method_{i}", f"_ZN{i}", f"src/file{i % 53}.cc")
        lines = (Line(fn, rnd.randrange(1, 2000)),)
        if i % 5 == 0:  # some inlining
            lines = (Line(Function(f"inline_{i}", "", "inc.h"), 3), *lines)
        locs.append(Location(m, m.start + rnd.randrange(0x200000), lines))
    stacks = []
    for _ in range(n_stacks):
        user = rnd.sample(locs, rnd.randrange(8, 40))
        kern = rnd.sample(kfuncs, rnd.randrange(0, 6)) if rnd.random() < 0.3 else []
        stacks.append(Stack(tuple(kern + user)))
    weights = [1 / (i + 1) for i in range(n_stacks)]  # a few hot stacks, a long tail
    procs = [
        ProcessInfo(1000 + i, f"svc{i}", f"/usr/bin/svc{i}", f"{i:02x}" * 20) for i in range(6)
    ]
    out = []
    for i in range(n):
        p = procs[rnd.randrange(len(procs))]
        tid = p.pid + rnd.randrange(8)
        out.append(
            Sample(
                rnd.choices(stacks, weights)[0],
                p,
                tid,
                rnd.randrange(2),
                f"worker-{tid % 8}",
                T0 + i * (10 * 10**9 // n) + rnd.randrange(1000),
                1,
            )
        )
    return out


def profile_set(samples: list[Sample]) -> ProfileSet:
    b = ProfileBuilder(cpu_profile_type(99))
    b.add_all(samples)
    return b.build()


def cpu_ms(fn: Callable[[], object], rounds: int) -> float:
    """Median CPU milliseconds of this process over ``rounds`` calls of ``fn``."""
    times = []
    for _ in range(rounds):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--stacks", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    samples = make_samples(a.samples, a.stacks)
    ps = profile_set(samples)
    n = ps.sample_count
    otlp = encode_profile_set(ps).SerializeToString()
    otlp_gz = gzip.compress(otlp, compresslevel=6)
    otlp_nots = encode_profile_set(ps, timestamps=False).SerializeToString()
    otlp_nots_gz = gzip.compress(otlp_nots, compresslevel=6)
    pprof_gz = encode_pprof(ps)
    records = sum(len(p.samples) for p in ps.processes)
    print(
        f"samples={n} merged_records={records} stacks={len(ps.dictionary.stacks) - 1} "
        f"locations={len(ps.dictionary.locations) - 1}"
    )
    rows = [
        ("otlp", otlp),
        ("otlp+gzip", otlp_gz),
        ("otlp-no-ts", otlp_nots),
        ("otlp-no-ts+gzip", otlp_nots_gz),
        ("pprof.gz", pprof_gz),
    ]
    for name, blob in rows:
        print(f"{name:>15}: {len(blob):>9} bytes  {len(blob) / n:7.2f} bytes/sample")
    print(
        f"ratio otlp/pprof.gz={len(otlp) / len(pprof_gz):.2f} "
        f"otlp+gzip/pprof.gz={len(otlp_gz) / len(pprof_gz):.2f} "
        f"otlp-no-ts+gzip/pprof.gz={len(otlp_nots_gz) / len(pprof_gz):.2f}"
    )
    per10k = 10_000 / n
    build_ms = cpu_ms(lambda: profile_set(samples), a.rounds) * per10k
    enc_ms = cpu_ms(lambda: encode_profile_set(ps).SerializeToString(), a.rounds) * per10k
    gz_ms = cpu_ms(lambda: gzip.compress(otlp, compresslevel=6), a.rounds) * per10k
    pprof_ms = cpu_ms(lambda: encode_pprof(ps), a.rounds) * per10k
    print(
        f"cpu per 10k samples: build={build_ms:.1f}ms otlp_encode={enc_ms:.1f}ms "
        f"gzip={gz_ms:.1f}ms (otlp total {enc_ms + gz_ms:.1f}ms) pprof.gz={pprof_ms:.1f}ms"
    )


if __name__ == "__main__":
    main()
