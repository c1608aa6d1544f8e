"""Synthetic symbolized samples with known function shares, for the OTLP tests and benchmark."""

from __future__ import annotations

import random
from collections import Counter

from collector.model import (
    FRAME_GO,
    FRAME_KERNEL,
    FRAME_NATIVE,
    Function,
    Line,
    Location,
    Mapping,
    ProcessInfo,
    ProfileBuilder,
    ProfileSet,
    Sample,
    Stack,
    SymbolizedBatch,
    cpu_profile_type,
)

T0 = 1_700_000_000_000_000_000


def _stacks() -> list[Stack]:
    exe = Mapping(0x400000, 0x500000, 0, "/usr/bin/app", "deadbeef" * 5)
    libc = Mapping(0x7F0000000000, 0x7F0000200000, 0x1000, "/lib/libc.so.6", "cafe" * 10)
    kern = Mapping(0, 0, 0, "[kernel.kallsyms]")
    fn = {n: Function(n, "_Z" + n, "app.c", 10) for n in ("main", "work", "hash", "spin")}
    inl = Function("inlined_helper", "", "app.h", 3)
    k = Location(kern, 0xFFFFFFFF81000000, (Line(Function("do_syscall_64"), 0),), FRAME_KERNEL)
    main = Location(exe, 0x401000, (Line(fn["main"], 5),), FRAME_NATIVE)
    work = Location(exe, 0x402000, (Line(inl, 1), Line(fn["work"], 7)), FRAME_NATIVE)
    hsh = Location(exe, 0x403000, (Line(fn["hash"], 9),), FRAME_NATIVE)
    spin = Location(exe, 0x404000, (Line(fn["spin"], 11),), FRAME_GO)
    raw = Location(libc, 0x7F0000001234)  # unresolved frame
    return [
        Stack((hsh, work, main)),
        Stack((spin, main)),
        Stack((k, raw, work, main)),
        Stack((raw, main)),
    ]


def make_batches(
    n: int, seed: int = 1, pids: int = 3, batch_size: int = 500
) -> list[SymbolizedBatch]:
    rnd = random.Random(seed)
    stacks = _stacks()
    weights = [50, 25, 15, 10]
    procs = [
        ProcessInfo(
            100 + i,
            f"app{i}",
            f"/usr/bin/app{i}",
            "ab" * 20 if i % 2 else "",
            "c" * 64 if i == 1 else "",
        )
        for i in range(pids)
    ]
    pt = cpu_profile_type(99)
    out: list[SymbolizedBatch] = []
    cur: list[Sample] = []
    for i in range(n):
        proc = procs[rnd.randrange(pids)]
        tid = proc.pid + rnd.randrange(4)
        trace = (bytes([1 + i % 3]) * 16, bytes([2]) * 8) if i % 7 == 0 else (b"", b"")
        cur.append(
            Sample(
                stack=rnd.choices(stacks, weights)[0],
                process=proc,
                tid=tid,
                cpu=rnd.randrange(2),
                comm=f"worker-{tid % 4}",
                time_ns=T0 + i * 10_101_010,
                value=1,
                trace_id=trace[0],
                span_id=trace[1],
            )
        )
        if len(cur) == batch_size:
            out.append(SymbolizedBatch(pt, cur))
            cur = []
    if cur:
        out.append(SymbolizedBatch(pt, cur))
    return out


def build(batches: list[SymbolizedBatch]) -> ProfileSet:
    b = ProfileBuilder(batches[0].profile_type)
    for batch in batches:
        b.add_all(batch.samples)
    return b.build()


def function_shares(ps: ProfileSet) -> dict[str, float]:
    """Share of the total value per function that appears anywhere on a stack (inclusive)."""
    d = ps.dictionary
    per: Counter[str] = Counter()
    total = 0
    for pp in ps.processes:
        for rec in pp.samples:
            v = rec.total
            total += v
            names: set[str] = set()
            for li in d.stacks[rec.stack_index]:
                names.update(d.locations[li].names())
            for name in names:
                per[name] += v
    return {k: v / total for k, v in per.items()} if total else {}


def batch_shares(batches: list[SymbolizedBatch]) -> dict[str, float]:
    per: Counter[str] = Counter()
    total = 0
    for batch in batches:
        for s in batch.samples:
            total += s.value
            names: set[str] = set()
            for loc in s.stack.frames:
                names.update(loc.names())
            for name in names:
                per[name] += s.value
    return {k: v / total for k, v in per.items()} if total else {}
