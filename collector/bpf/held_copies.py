"""Samples that carry a copy of their stack (the cpu receiver's ``unwind_stack_copy``), held
until the unwind worker can walk the copy: their process loaded, or gone (then walked from its
snapshot). Bounded in bytes and in time; nothing held is ever dropped: a sample whose copy
cannot be walked with tables goes on with the frame-pointer walk of its copy and the
``no_process`` marker, as BPF would have sent it without a copy.

Not thread-safe by itself: ``TableUnwinding`` calls it under its condition's lock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from collector.model.raw import unwind_stop_sentinel
from collector.unwind import layout as L
from collector.unwind.shared_mem import SharedMapping
from collector.unwind.walk import walk_frame_pointers

if TYPE_CHECKING:
    from collector.bpf.syscall import Map
    from collector.model import RawSample
    from collector.unwind.walk import StackCopy

MAX_HELD_BYTES = 4 << 20  # of copies held at once; past it a sample goes on at once
MAX_HELD_S = 10.0  # then it goes on, frame pointers walked in its copy (copies_expired)
PAUSE_SHARE = 0.75  # of MAX_HELD_BYTES held: BPF takes no more copies until fewer are
_READ, _PAUSE, _BOUNDED = 1, 2, 3  # words of struct unwind_copy_flow (0: sent, BPF's)


class Held(NamedTuple):
    since: float  # monotonic seconds when it was held
    sample: RawSample
    copy: StackCopy


class HeldCopies:
    def __init__(self, max_bytes: int = MAX_HELD_BYTES, max_s: float = MAX_HELD_S) -> None:
        self._max_bytes = max_bytes
        self._max_s = max_s
        self._held: dict[int, list[Held]] = {}  # by pid
        self._bytes = 0
        self.ready: set[int] = set()  # pids the worker can walk now
        self._done: list[RawSample] = []  # walked (or given up), for the reader
        self.counts = dict.fromkeys(
            (
                "copies_held",
                "copies_held_full",
                "copies_walked",
                "copies_whole",
                "copies_unresolved",
                "copies_from_snapshot",
                "copies_expired",
            ),
            0,
        )

    def __contains__(self, pid: int) -> bool:
        return pid in self._held

    @property
    def paused(self) -> bool:
        """Nearly full: BPF is told to stop copying (the room left is for copies in flight)."""
        return self._bytes >= self._max_bytes * PAUSE_SHARE

    def add(self, sample: RawSample, copy: StackCopy, now: float) -> bool:
        """False when the bytes held are at their bound (counted): the sample then gets the
        frame-pointer walk of its copy, and goes on."""
        if self._bytes + len(copy.data) > self._max_bytes:
            self.counts["copies_held_full"] += 1
            _frame_pointers(sample, copy)
            return False
        self._held.setdefault(sample.pid, []).append(Held(now, sample, copy))
        self._bytes += len(copy.data)
        self.counts["copies_held"] += 1
        return True

    def pop(self, pid: int) -> list[Held]:
        waiting = self._held.pop(pid, [])
        self._bytes -= sum(len(h.copy.data) for h in waiting)
        self.ready.discard(pid)
        return waiting

    def take(self, now: float, expire: bool = False) -> list[RawSample]:
        """The samples done, and those held longer than the bound (all with ``expire``)."""
        out, self._done = self._done, []
        for pid in list(self._held):
            if expire or now - self._held[pid][0].since > self._max_s:
                waiting = self.pop(pid)
                self.counts["copies_expired"] += len(waiting)
                for h in waiting:
                    _frame_pointers(h.sample, h.copy)
                    out.append(h.sample)
        return out

    def finish(self, waiting: list[Held], walked: list[tuple[list[int], int]] | None) -> None:
        """The worker's walks (None: it had no entries for them): frames set, samples done."""
        if walked is None:
            self.counts["copies_unresolved"] += len(waiting)
            for held in waiting:
                _frame_pointers(held.sample, held.copy)
        else:
            self.counts["copies_walked"] += len(waiting)
            for held, (frames, reason) in zip(waiting, walked, strict=True):
                if reason == L.END:
                    self.counts["copies_whole"] += 1
                else:  # why, by reason: a copy too short for a deep stack is read_fault
                    name = f"copies_stopped_{L.REASONS[reason]}"
                    self.counts[name] = self.counts.get(name, 0) + 1
                    frames.append(unwind_stop_sentinel(reason))
                held.sample.user_stack = tuple(frames)
        self._done.extend(h.sample for h in waiting)


def _frame_pointers(sample: RawSample, copy: StackCopy) -> None:
    """A copy that cannot be walked with tables: the frame-pointer walk BPF would have sent
    without it (collector.unwind.walk.walk_frame_pointers)."""
    frames, reason = walk_frame_pointers(copy)
    frames.append(unwind_stop_sentinel(reason))
    sample.user_stack = tuple(frames)


class CopyFlow:
    """What the reader and BPF tell each other about copies (bpf/unwind.h unwind_copy_flow,
    an mmapped element: plain 8-byte stores, no syscall): the bytes of copy records read from
    the ring, so copies take at most their share of it; whether the held copies are nearly at
    their bound, so BPF walks with frame pointers instead of sending copies that could not be
    held; and how many copies BPF did not take for either reason. Reader thread."""

    def __init__(self, flow: Map) -> None:
        self._mapping = SharedMapping(flow.fd, flow.value_size)
        self._words = self._mapping.view.cast("Q")  # sent, read, pause, bounded
        self.read = 0  # bytes of copy records read from the ring (add to it per record)
        self._bounded = 0

    def publish(self, paused: bool) -> int:
        """After a drain: store what was read and the pause; returns the copies BPF did not
        take since the last call."""
        words = self._words
        words[_READ] = self.read
        words[_PAUSE] = int(paused)
        bounded = words[_BOUNDED]
        new, self._bounded = bounded - self._bounded, bounded
        return new

    def close(self) -> None:
        self._words.release()
        self._mapping.close()
