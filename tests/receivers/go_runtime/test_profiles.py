"""Record decoding and the live-goroutine table, on records packed like the BPF program's."""

from __future__ import annotations

import random
import statistics

from collector.bpf.events import UNSAMPLED
from receivers.go_runtime import profiles as pt
from receivers.go_runtime.events import EV_ALLOC, EV_CHAN, EV_CREATE, GO_EVENT


def record(kind: int, value: int, threshold: int, frames: tuple[int, ...], goid: int = 7):
    head = GO_EVENT.pack(1000, value, goid, kind, 0, 42, 43, 1, len(frames), threshold, 0, b"x")
    return memoryview(head + b"".join(f.to_bytes(8, "little") for f in frames))


def test_decode_keeps_frames_and_values() -> None:
    stacks = pt.Stacks()
    kind, goid, n, s = pt.decode(record(EV_CHAN, 5000, UNSAMPLED, (1, 2, 3)), stacks, {}, 10)
    assert (kind, goid, n) == (EV_CHAN, 7, 3)
    assert (s.pid, s.tid, s.comm, s.time_ns, s.value, s.more) == (42, 43, "x", 1010, 1, (5000,))
    assert s.user_stack == (1, 2, 3)
    _, _, _, again = pt.decode(record(EV_CHAN, 1, UNSAMPLED, (1, 2, 3)), stacks, {}, 0)
    assert again.user_stack is s.user_stack  # interned: equal stacks share one tuple
    _, _, _, c = pt.decode(record(EV_CREATE, 1, UNSAMPLED, (9,)), stacks, {}, 0)
    assert (c.value, c.more) == (1, ())


def test_a_record_cut_short_gives_only_the_frames_it_holds() -> None:
    view = record(EV_CHAN, 1, UNSAMPLED, (1, 2, 3))
    _, _, n, s = pt.decode(view[: len(view) - 8], pt.Stacks(), {}, 0)
    assert n == 2 and s.user_stack == (1, 2)


def test_sampled_records_are_scaled_without_bias() -> None:
    random.seed(1)
    # recorded with probability 0.3: each stands for 1/0.3 objects and value/0.3 bytes
    threshold = int(0.3 * (1 << 32))
    counts, sizes = [], []
    for _ in range(20_000):
        _, _, _, s = pt.decode(record(EV_ALLOC, 100, threshold, (1,)), pt.Stacks(), {}, 0)
        counts.append(s.value)
        sizes.append(s.more[0])
    assert abs(statistics.mean(counts) - 1 / 0.3) < 0.02
    assert abs(statistics.mean(sizes) - 100 / 0.3) < 0.5
    assert set(counts) == {3, 4}  # stochastic rounding, never a biased round()


def test_live_goroutines_bounded_and_grouped_by_stack() -> None:
    live = pt.LiveGoroutines(limit=3)
    a, b = (1, 2), (3, 4)
    assert live.add(10, 1, a, "p") and live.add(10, 2, a, "p") and live.add(11, 1, b, "q")
    assert not live.add(11, 2, b, "q")  # over the limit: the caller counts it
    live.end(10, 1)
    live.end(10, 99)  # unknown: nothing happens
    got = {(s.pid, s.user_stack): s.value for s in live.snapshot(5)}
    assert got == {(10, a): 1, (11, b): 1}
    live.drop_process(11)
    assert live.size == 1 and [s.pid for s in live.snapshot(5)] == [10]
