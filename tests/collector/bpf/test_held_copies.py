"""HeldCopies: samples with stack copies wait bounded in bytes and time, and none is lost."""

from __future__ import annotations

from collector.bpf.held_copies import HeldCopies
from collector.model import RawSample
from collector.model.raw import unwind_stop_sentinel
from collector.unwind import layout as L
from collector.unwind.walk import StackCopy

LEAF = (0x1234, unwind_stop_sentinel(L.NO_PROCESS))


def _sample(pid: int) -> RawSample:
    return RawSample(pid, pid, 0, "x", 0, 1, LEAF, ())


def _copy(size: int = 4096) -> StackCopy:
    return StackCopy(0x1234, 0x7000, 0, bytes(size))


def test_full_bytes_refuse_and_count_and_popping_frees_them() -> None:
    h = HeldCopies(max_bytes=8192)
    assert h.add(_sample(1), _copy(), 0.0) and h.add(_sample(1), _copy(), 0.0)
    assert not h.add(_sample(2), _copy(), 0.0)
    assert h.counts["copies_held_full"] == 1 and h.counts["copies_held"] == 2
    assert len(h.pop(1)) == 2 and 1 not in h
    assert h.add(_sample(2), _copy(), 0.0)


def test_walked_samples_get_their_frames_and_the_stop_reason() -> None:
    h = HeldCopies()
    h.add(_sample(1), _copy(), 0.0)
    h.add(_sample(1), _copy(), 0.0)
    waiting = h.pop(1)
    h.finish(waiting, [([1, 2, 3], L.END), ([1, 2], L.READ_FAULT)])
    out = h.take(0.0)
    assert [s.user_stack for s in out] == [(1, 2, 3), (1, 2, unwind_stop_sentinel(L.READ_FAULT))]
    assert h.counts["copies_walked"] == 2 and h.counts["copies_whole"] == 1
    assert h.counts["copies_stopped_read_fault"] == 1


def test_unwalkable_and_expired_samples_go_on_as_they_came() -> None:
    h = HeldCopies(max_s=10.0)
    h.add(_sample(1), _copy(), 0.0)
    h.finish(h.pop(1), None)
    h.add(_sample(2), _copy(), 0.0)
    h.add(_sample(3), _copy(), 5.0)
    out = h.take(11.0)  # pid 2 is past the bound, pid 3 not yet
    assert sorted(s.pid for s in out) == [1, 2] and all(s.user_stack == LEAF for s in out)
    assert h.counts["copies_unresolved"] == 1 and h.counts["copies_expired"] == 1
    assert [s.pid for s in h.take(11.0, expire=True)] == [3]  # shutdown: everything goes on


def test_pause_from_three_quarters_of_the_bound_until_walked() -> None:
    h = HeldCopies(max_bytes=4 * 4096)
    h.add(_sample(1), _copy(), 0.0)
    h.add(_sample(1), _copy(), 0.0)
    assert not h.paused
    h.add(_sample(2), _copy(), 0.0)
    assert h.paused  # BPF stops copying; the last quarter is for copies already in flight
    h.pop(1)
    assert not h.paused


def _chain_copy() -> StackCopy:
    """rsp 0x7000, rbp 0x7010: two frame-pointer frames, then rbp 0 (the chain's end)."""
    data = bytearray(64)
    data[0x10:0x20] = (0x7020).to_bytes(8, "little") + (0x4001).to_bytes(8, "little")
    data[0x20:0x30] = (0).to_bytes(8, "little") + (0x4002).to_bytes(8, "little")
    return StackCopy(0x1234, 0x7000, 0x7010, bytes(data))


FP_WALKED = (0x1234, 0x4001, 0x4002, unwind_stop_sentinel(L.NO_PROCESS))


def test_copies_not_walked_with_tables_get_the_frame_pointer_walk_bpf_would_have_sent() -> None:
    h = HeldCopies(max_bytes=64, max_s=10.0)
    expired, unresolved, refused = _sample(1), _sample(2), _sample(3)
    assert h.add(expired, _chain_copy(), 0.0)
    assert not h.add(refused, _chain_copy(), 0.0)  # past the bound: walked at once
    assert refused.user_stack == FP_WALKED
    assert [s.user_stack for s in h.take(11.0)] == [FP_WALKED]
    assert h.add(unresolved, _chain_copy(), 20.0)
    h.finish(h.pop(2), None)
    assert [s.user_stack for s in h.take(20.0)] == [FP_WALKED]
