"""Stacks carried in a ring-buffer record after its 64-byte event (bpf/common.h).

A record is the event, then ``user_stack_id & 0xff`` user addresses (EVENT_F_USER_FRAMES),
then ``kernel_stack_id`` kernel addresses (EVENT_F_KERNEL_FRAMES), leaf first. No stack map is
involved, so nothing can collide or be cleared away before it is read. Equal stacks share one
tuple (interned by their bytes, bounded), as the stack map's ids made them share before: the
symbolizer's per-process caches key on these tuples.

``user_stack`` resolves the other kind, a user stack the event names by its stack id.
"""

from __future__ import annotations

from collector.bpf.events import EVENT, F_USER_SPILL, NEG_EFAULT, NEG_ENOENT
from collector.bpf.stacks import StackReader
from collector.model.raw import MISSING_USER_STACK, unwind_stop_sentinel
from collector.unwind import layout as L

MAX_INTERNED = 4096  # per kind: distinct stacks kept to share their tuples (then rebuilt)
_NO_FRAMES: tuple[int, ...] = ()
_MISSING_USER = (MISSING_USER_STACK,)


class FrameDecoder:
    def __init__(self) -> None:
        self._user: dict[tuple[int, bytes], tuple[int, ...]] = {}
        self._kernel: dict[bytes, tuple[int, ...]] = {}
        self._walked: dict[tuple[int, ...], tuple[int, ...]] = {}
        self.rebuilds = 0  # how often an interning table was full and started over

    def user(self, view: memoryview, user_stack_id: int) -> tuple[int, ...]:
        """The user frames after the event, then the unwinder's stop sentinel unless the walk
        reached the outermost frame (reason END, also the kernel walker's) or had no user
        registers (a kernel thread)."""
        n = min(user_stack_id & 0xFF, (len(view) - EVENT.size) // 8)
        if n <= 0:
            return _NO_FRAMES
        key = (user_stack_id, bytes(view[EVENT.size : EVENT.size + 8 * n]))
        stack = self._user.get(key)
        if stack is not None:
            return stack
        frames = _upto_zero(tuple(memoryview(key[1]).cast("Q")))
        reason = (user_stack_id >> 8) & 0xFF
        if reason != L.END and reason != L.NO_REGS:
            frames = (*frames, unwind_stop_sentinel(reason))
        frames = self.share(frames)  # the same tuple as a stack copy walked to these frames
        if len(self._user) >= MAX_INTERNED:
            self._user.clear()
            self.rebuilds += 1
        self._user[key] = frames
        return frames

    def share(self, frames: tuple[int, ...]) -> tuple[int, ...]:
        """One tuple for equal user stacks, walked in BPF (``user``) or in user space from a
        stack copy."""
        stack = self._walked.get(frames)
        if stack is None:
            if len(self._walked) >= MAX_INTERNED:
                self._walked.clear()
                self.rebuilds += 1
            stack = self._walked[frames] = frames
        return stack

    def kernel(
        self, view: memoryview, user_stack_id: int, flags_user: bool, n: int
    ) -> tuple[int, ...]:
        """The ``n`` kernel frames after the user frames (if the record has ``flags_user``)."""
        first = EVENT.size + (8 * (user_stack_id & 0xFF) if flags_user else 0)
        n = min(n, (len(view) - first) // 8)
        if n <= 0:
            return _NO_FRAMES
        raw = bytes(view[first : first + 8 * n])
        stack = self._kernel.get(raw)
        if stack is None:
            if len(self._kernel) >= MAX_INTERNED:
                self._kernel.clear()
                self.rebuilds += 1
            stack = self._kernel[raw] = _upto_zero(tuple(memoryview(raw).cast("Q")))
        return stack


def _upto_zero(frames: tuple[int, ...]) -> tuple[int, ...]:
    """The kernel's frame-pointer walk can store a 0 return address where a chain ends (the
    stack map's zero padding hid it): the stack ends there, as StackReader reads it."""
    try:
        return frames[: frames.index(0)]
    except ValueError:
        return frames


def user_stack(
    stacks: StackReader, spill: StackReader, stack_id: int, flags: int, walked: int
) -> tuple[int, ...]:
    """The user stack of an event's ``user_stack_id`` (in ``spill`` if its flags say it
    collided in ``stacks``), walked next to the stamp ``walked``: () for none by design (a
    kernel thread, user stacks disabled), the missing marker when it was lost."""
    if stack_id >= 0:
        stack = (spill if flags & F_USER_SPILL else stacks).get(stack_id, walked)
        return _MISSING_USER if stack is None else stack
    if stack_id in (NEG_EFAULT, NEG_ENOENT):
        return _NO_FRAMES
    return _MISSING_USER
