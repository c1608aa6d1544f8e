"""Record decoding and the live-goroutine table, on records packed like the BPF program's."""

from __future__ import annotations

import ctypes
import os
import random
import statistics

import pytest

from collector.bpf.events import UNSAMPLED
from collector.golang.procmem import read_many
from receivers.go_runtime import profiles as pt
from receivers.go_runtime.events import EV_ALLOC, EV_ALLOC_SAMPLED, EV_CHAN, EV_CREATE, GO_EVENT


def record(
    kind: int, value: int, threshold: int, frames: tuple[int, ...], goid: int = 7, aux: int = 0
) -> memoryview:
    head = GO_EVENT.pack(1000, value, goid, kind, 0, 42, 43, 1, len(frames), threshold, aux, b"x")
    return memoryview(head + b"".join(f.to_bytes(8, "little") for f in frames))


def test_decode_keeps_frames_and_values() -> None:
    stacks = pt.Stacks()
    kind, goid, n, s = pt.decode(
        record(EV_CHAN, 5000, UNSAMPLED, (1, 2, 3)), stacks, {}, 10, pt.Rounding()
    )
    assert (kind, goid, n) == (EV_CHAN, 7, 3)
    assert (s.pid, s.tid, s.comm, s.time_ns, s.value, s.more) == (42, 43, "x", 1010, 1, (5000,))
    assert s.user_stack == (1, 2, 3)
    _, _, _, again = pt.decode(
        record(EV_CHAN, 1, UNSAMPLED, (1, 2, 3)), stacks, {}, 0, pt.Rounding()
    )
    assert again.user_stack is s.user_stack  # interned: equal stacks share one tuple
    _, _, _, c = pt.decode(record(EV_CREATE, 1, UNSAMPLED, (9,)), stacks, {}, 0, pt.Rounding())
    assert (c.value, c.more) == (1, ())


def test_a_record_cut_short_gives_only_the_frames_it_holds() -> None:
    view = record(EV_CHAN, 1, UNSAMPLED, (1, 2, 3))
    _, _, n, s = pt.decode(view[: len(view) - 8], pt.Stacks(), {}, 0, pt.Rounding())
    assert n == 2 and s.user_stack == (1, 2)


def test_sampled_records_are_scaled_without_bias() -> None:
    random.seed(1)
    # recorded with probability 0.3: each stands for 1/0.3 objects and value/0.3 bytes
    threshold = int(0.3 * (1 << 32))
    rounding, stacks = pt.Rounding(), pt.Stacks()
    counts, sizes = [], []
    for _ in range(20_000):
        _, _, _, s = pt.decode(record(EV_ALLOC, 100, threshold, (1,)), stacks, {}, 0, rounding)
        counts.append(s.value)
        sizes.append(s.more[0])
    assert set(counts) == {3, 4}  # rounded up or down, never a biased round()
    # one stack's totals within 1 of the exact ones (a carry per stack), not a random walk
    assert abs(sum(counts) - 20_000 / 0.3) < 1
    assert abs(sum(sizes) - 20_000 * 100 / 0.3) < 1
    # unbiased from the first sample: one sample each of 20 000 stacks (fresh carries)
    firsts = [
        pt.decode(record(EV_ALLOC, 100, threshold, (i,)), stacks, {}, 0, rounding)[3].value
        for i in range(2, 20_002)
    ]
    assert abs(statistics.mean(firsts) - 1 / 0.3) < 0.02


def test_rounding_carries_per_stack_and_stays_bounded() -> None:
    rounding = pt.Rounding(limit=2)
    a, b = (1, 7, (1,)), (1, 7, (2,))
    got_a = [rounding.scaled(a, 1, 10, 2.5)[0] for _ in range(4)]
    got_b = [rounding.scaled(b, 1, 10, 1.5)[0] for _ in range(4)]
    assert sum(got_a) == 10 and sum(got_b) == 6  # 4 x 2.5 and 4 x 1.5: exact at even counts
    rounding.scaled((1, 7, (3,)), 1, 10, 2.5)  # a third key: the carries start over
    assert len(rounding) == 1


def _g(status: int, goid: int) -> bytes:
    """The 16 bytes prune reads from a runtime.g: atomicstatus (u32, padded), then goid."""
    return status.to_bytes(8, "little") + goid.to_bytes(8, "little")


def test_live_goroutines_bounded_grouped_by_stack_and_pruned_from_memory() -> None:
    live = pt.LiveGoroutines(limit=3)
    a, b = (1, 2), (3, 4)
    assert live.add(10, 1, 0x1000, a, "p") and live.add(10, 2, 0x2000, a, "p")
    assert live.add(11, 1, 0x3000, b, "q")
    assert not live.add(11, 2, 0x4000, b, "q")  # over the limit: the caller counts it
    # pid 10's memory: goid 1's g is dead, goid 2's still runs (status 2, the scan bit set)
    memory = {0x1000 + 152 - 8: _g(6, 1), 0x2000 + 152 - 8: _g(0x1002, 2)}
    asked: list[tuple[list[int], int]] = []

    def read(addresses: list[int], size: int) -> list[bytes | None]:
        asked.append((addresses, size))
        return [memory.get(x) for x in addresses]

    assert live.prune(10, 152, read) == 1
    assert asked == [([0x1000 + 144, 0x2000 + 144], 16)]
    got = {(s.pid, s.user_stack): s.value for s in live.snapshot(5)}
    assert got == {(10, a): 1, (11, b): 1}
    # a g reused by a newer goroutine (another goid), or unreadable: ended too
    memory[0x2000 + 144] = _g(2, 7)
    assert live.prune(10, 152, read) == 1 and 10 not in {s.pid for s in live.snapshot(5)}

    def gone(addresses: list[int], size: int) -> list[bytes | None]:
        raise ProcessLookupError

    assert live.prune(11, 152, gone) == 1
    assert live.size == 0 and live.snapshot(5) == []


def test_read_many_reads_this_process() -> None:
    """collector.golang.procmem through the real syscall, on buffers of this process."""
    bufs = [ctypes.create_string_buffer(bytes([i % 256]) * 16, 16) for i in range(1500)]
    got = read_many(os.getpid(), [ctypes.addressof(b) for b in bufs], 16)
    assert got == [bytes([i % 256]) * 16 for i in range(1500)]  # more than one batch
    # an unmapped address in the middle: None there, the others still read
    got = read_many(os.getpid(), [ctypes.addressof(bufs[0]), 8, ctypes.addressof(bufs[2])], 16)
    assert got == [b"\0" * 16, None, b"\2" * 16]


def test_heap_sample_scale_is_runtime_pprofs() -> None:
    # scaleHeapSample: 1 / (1 - exp(-size/rate)); rate 1 (every allocation) and size 0: 1
    assert pt.heap_sample_scale(4096, 512 * 1024) == pytest.approx(128.5, abs=0.01)
    assert pt.heap_sample_scale(64, 65536) == pytest.approx(1024.5, abs=0.01)
    assert pt.heap_sample_scale(10 << 20, 512 * 1024) == pytest.approx(1.0)
    assert pt.heap_sample_scale(100, 1) == 1.0


def test_runtime_sampled_allocation_is_scaled_by_the_rate_it_carries() -> None:
    counts, sizes = [], []
    for _ in range(5000):
        rec = record(EV_ALLOC_SAMPLED, 64, UNSAMPLED, (1,), aux=65536)  # aux: MemProfileRate
        _, _, _, s = pt.decode(rec, pt.Stacks(), {}, 0, pt.Rounding())
        counts.append(s.value)
        sizes.append(s.more[0])
    assert abs(statistics.mean(counts) - 1024.5) < 1
    assert abs(statistics.mean(sizes) - 64 * 1024.5) < 64
