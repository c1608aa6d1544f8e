"""Weights, the outstanding mirror and the window's samples (no kernel needed)."""

from __future__ import annotations

import math
import random

from receivers.heap.program import comm_words, exp_table
from receivers.heap.state import FaultState, HeapState, heap_profile_type

B = 32768


def test_exp_table_has_the_mean_and_shape_of_an_exponential() -> None:
    t = exp_table(B)
    assert abs(sum(t) / len(t) - B) < 1e-3 * B
    # median of an exponential: B ln 2
    assert abs(sorted(t)[len(t) // 2] - B * math.log(2)) < 0.01 * B


def test_weight_is_the_inverse_of_the_sampling_probability() -> None:
    s = HeapState(B, None, 100)
    assert abs(s.weight(256) - 1 / (1 - math.exp(-256 / B))) < 1e-9
    assert abs(s.weight(10 * B) - 1.0) < 1e-4  # a huge block is always sampled


def simulate(sizes: list[int], seed: int) -> tuple[float, float, float, float]:
    """The BPF sampler (a countdown refilled from exp_table) in Python, weighted like the
    receiver: (estimated objects, estimated bytes, true objects, true bytes)."""
    rng = random.Random(seed)
    table = exp_table(B)
    state = HeapState(B, None, 1 << 20)
    left = table[rng.randrange(len(table))]
    objects = space = 0.0
    for size in sizes:
        left -= size
        if left > 0:
            continue
        left = table[rng.randrange(len(table))]
        w = state.weight(size)
        objects += w
        space += w * size
    return objects, space, float(len(sizes)), float(sum(sizes))


def test_sampling_by_bytes_is_unbiased_for_small_and_large_sizes() -> None:
    rng = random.Random(1)
    small = [rng.randrange(16, 256) for _ in range(400_000)]
    large = [rng.randrange(64 * 1024, 256 * 1024) for _ in range(3000)]
    for sizes in (small, large, small[:200_000] + large[:1500]):
        eo, es, to, ts = simulate(sizes, seed=len(sizes))
        assert abs(es - ts) < 0.03 * ts, (es, ts)
        assert abs(eo - to) < 0.05 * to, (eo, to)


def test_outstanding_blocks_free_drop_and_the_window() -> None:
    s = HeapState(B, 30.0, 100)
    stack = (0x1000, 0x2000)
    assert s.alloc(7, "w", 0xA0, 4096, stack, 0, True) == ""
    assert s.alloc(7, "w", 0xB0, 4096, stack, 40 * 10**9, True) == ""
    assert s.alloc(7, "w", 0xC0, 512, (0x3000,), 0, False) == ""  # map was full: not in use
    assert s.free(7, 0xB0) and not s.free(7, 0xB0) and not s.free(8, 0xA0)
    w = s.weight(4096)
    (leaky,) = [x for x in s.take(41 * 10**9, 5) if x.user_stack == stack]
    assert leaky.value == round(2 * w) and leaky.more[0] == round(2 * w * 4096)
    assert leaky.more[1:3] == (round(w), round(w * 4096))  # one outstanding
    assert leaky.more[3:] == (round(w), round(w * 4096))  # and older than min_age
    again = s.take(41 * 10**9, 6)  # next window: no allocations, the block still in use
    assert [(x.value, x.more[1]) for x in again] == [(0, round(w))]
    assert s.drop(7) == [0xA0] and s.blocks == 0 and s.take(0, 0) == []


def test_the_mirror_is_bounded_and_counts_what_it_refuses() -> None:
    s = HeapState(B, None, 2)
    assert s.alloc(1, "w", 1, 8, (), 0, True) == ""
    assert s.alloc(1, "w", 2, 8, (), 0, True) == ""
    assert s.alloc(1, "w", 3, 8, (), 0, True) == "blocks_over_limit"
    assert s.alloc(1, "w", 2, 8, (), 0, True) == "blocks_replaced"
    assert s.blocks == 2


def test_profile_types_follow_go() -> None:
    pt = heap_profile_type(B, 30.0)
    assert [t for t, _ in pt.value_types] == [
        "alloc_objects",
        "alloc_space",
        "inuse_objects",
        "inuse_space",
        "leak_objects",
        "leak_space",
    ]
    assert pt.default_sample_type == "inuse_space" and pt.name == "heap"
    assert len(heap_profile_type(B, None).value_types) == 4
    assert any("1 - exp(-s/sample_bytes)" in n for n in pt.notes)


def test_faults_and_brk_growth() -> None:
    f = FaultState()
    f.fault(3, "w", (1,))
    f.fault(3, "w", (1,))
    f.grow(3, "w", (2,), 0, 0x10000)  # first break seen: the baseline
    f.grow(3, "w", (2,), 0, 0x30000)
    f.grow(3, "w", (2,), 8192, 0)  # mmap
    got = {x.user_stack: (x.value, x.more) for x in f.take(0, 0)}
    assert got == {(1,): (2, (0,)), (2,): (0, (0x20000 + 8192,))}


def test_comm_words_are_the_exec_comm() -> None:
    lo, hi = comm_words("/usr/bin/a_very_long_program_name")
    raw = lo.to_bytes(8, "little") + hi.to_bytes(8, "little")
    assert raw == b"a_very_long_pro\0"


def test_samples_span_the_window() -> None:
    s = HeapState(B, None, 100)
    s.alloc(1, "w", 0x10, 64, (1,), 1_000, True)  # boot clock
    s.alloc(1, "w", 0x20, 64, (2,), 5_000, True)
    s.free(1, 0x20)
    s.take(9_000, 109_000)  # wall clock = boot + 100 000
    s.alloc(1, "w", 0x30, 64, (1,), 10_000, True)
    times = {x.user_stack: x.time_ns for x in s.take(20_000, 120_000)}
    assert times == {(1,): 110_000}  # first allocation of the window; 0x10 is in it too
    (only,) = s.take(30_000, 130_000)  # nothing allocated: the snapshot is timed now
    assert only.time_ns == 130_000 and only.value == 0
