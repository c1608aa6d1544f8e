"""What the heap receiver remembers between records: the sampled blocks still outstanding (a
mirror of the BPF map, with their stacks already resolved) and the window's allocations, turned
into one batch of samples per window.

Weights: a block of s bytes was sampled with probability p = 1 - exp(-s / sample_bytes), so it
stands for 1/p allocations and s/p bytes (Horvitz-Thompson: totals stay unbiased for every size).
Sums are kept as floats per (pid, comm, stack) and rounded once per sample of the batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from collector.model import ProfileType, RawSample

_GO_TYPES = (("alloc_space", "bytes"), ("inuse_objects", "count"), ("inuse_space", "bytes"))
_LEAK_TYPES = (("leak_objects", "count"), ("leak_space", "bytes"))


def heap_profile_type(sample_bytes: int, min_age: float | None) -> ProfileType:
    """Go's heap profile value types, in Go's order; inuse_space shown by default."""
    notes = [
        f"sampled in the kernel by bytes, Poisson with mean sample_bytes={sample_bytes}: an "
        "allocation of s bytes is recorded with probability p = 1 - exp(-s/sample_bytes) and "
        "counted as 1/p objects and s/p bytes, so totals are unbiased estimates",
        "alloc_*: allocated during this window; inuse_*: outstanding at its end",
    ]
    extra = _GO_TYPES
    if min_age is not None:
        notes.append(f"leak_*: outstanding at the window's end and older than {min_age:g}s")
        extra = (*_GO_TYPES, *_LEAK_TYPES)
    return ProfileType(
        name="heap",
        sample_type="alloc_objects",
        sample_unit="count",
        notes=tuple(notes),
        extra_values=extra,
        default_sample_type="inuse_space",
    )


def fault_profile_type() -> ProfileType:
    return ProfileType(
        name="page_faults",
        sample_type="page_faults",
        sample_unit="count",
        notes=(
            "every user page fault of the targets (exceptions:page_fault_user), and the bytes "
            "asked of brk (growth of the break) and mmap, at their user stacks",
        ),
        extra_values=(("mapped_space", "bytes"),),
        default_sample_type="page_faults",  # pprof shows the last type when none is named
    )


@dataclass(slots=True)
class Block:
    size: int
    weight: float  # allocations this sample stands for
    stack: tuple[int, ...]
    time_ns: int  # CLOCK_BOOTTIME of the allocation
    comm: str


Key = tuple[int, str, tuple[int, ...]]  # pid, comm, user stack


class HeapState:
    """Not thread-safe: the receiver's reader thread owns it."""

    def __init__(self, sample_bytes: int, min_age_s: float | None, max_blocks: int) -> None:
        self.sample_bytes = sample_bytes
        self.min_age_ns = None if min_age_s is None else int(min_age_s * 1e9)
        self.max_blocks = max_blocks
        self.blocks = 0
        self._live: dict[int, dict[int, Block]] = {}
        self._window: dict[Key, list[float]] = {}
        self._weights: dict[int, float] = {}

    def weight(self, size: int) -> float:
        w = self._weights.get(size)
        if w is None:
            w = -1.0 / math.expm1(-max(size, 1) / self.sample_bytes)
            if len(self._weights) > 65536:
                self._weights.clear()
            self._weights[size] = w
        return w

    def alloc(
        self,
        pid: int,
        comm: str,
        addr: int,
        size: int,
        stack: tuple[int, ...],
        time_ns: int,
        tracked: bool,
    ) -> str:
        """Record a sampled allocation; returns "" or the name of what to count."""
        w = self.weight(size)
        acc = self._window.get((pid, comm, stack))
        if acc is None:
            self._window[(pid, comm, stack)] = [w, w * size, time_ns]  # and its first time
        else:
            acc[0] += w
            acc[1] += w * size
        if not tracked:
            return ""
        blocks = self._live.setdefault(pid, {})
        if addr in blocks:  # its free was lost (ring full): the new block replaces it
            blocks[addr] = Block(size, w, stack, time_ns, comm)
            return "blocks_replaced"
        if self.blocks >= self.max_blocks:
            return "blocks_over_limit"
        blocks[addr] = Block(size, w, stack, time_ns, comm)
        self.blocks += 1
        return ""

    def free(self, pid: int, addr: int) -> bool:
        blocks = self._live.get(pid)
        if blocks is None or blocks.pop(addr, None) is None:
            return False
        self.blocks -= 1
        return True

    def drop(self, pid: int) -> list[int]:
        """Forget a process that exited or exec'd; the addresses it had outstanding."""
        blocks = self._live.pop(pid, None) or {}
        self.blocks -= len(blocks)
        return list(blocks)

    def live(self, pid: int) -> int:
        return len(self._live.get(pid, ()))

    def take(self, now_ns: int, wall_ns: int) -> list[RawSample]:
        """The window's samples: allocations since the last take (timed at the first of
        them, so the profile spans the window), blocks outstanding now (timed now)."""
        leak = self.min_age_ns
        width = 6 if leak is not None else 4
        sums: dict[Key, list[float]] = {}
        first: dict[Key, float] = {}
        for key, (objects, space, t) in self._window.items():
            sums[key] = [objects, space] + [0.0] * (width - 2)
            first[key] = t
        self._window = {}
        for pid, blocks in self._live.items():
            for b in blocks.values():
                key = (pid, b.comm, b.stack)
                acc = sums.get(key)
                if acc is None:
                    acc = sums[key] = [0.0] * width
                acc[2] += b.weight
                acc[3] += b.weight * b.size
                if leak is not None and now_ns - b.time_ns >= leak:
                    acc[4] += b.weight
                    acc[5] += b.weight * b.size
        out = []
        offset = wall_ns - now_ns
        for key, acc in sums.items():
            values = tuple(round(v) for v in acc)
            if any(values):
                t = int(first.get(key, now_ns)) + offset
                pid, comm, stack = key
                out.append(RawSample(pid, pid, 0, comm, t, values[0], stack, (), more=values[1:]))
        return out


class FaultState:
    """page_faults mode: faults and brk/mmap growth per (pid, comm, stack) in the window."""

    def __init__(self) -> None:
        self._window: dict[Key, list[int]] = {}
        self._brk: dict[int, int] = {}  # pid -> last break seen

    def fault(self, pid: int, comm: str, stack: tuple[int, ...], time_ns: int = 0) -> None:
        acc = self._window.setdefault((pid, comm, stack), [0, 0, time_ns])
        acc[0] += 1

    def grow(
        self,
        pid: int,
        comm: str,
        stack: tuple[int, ...],
        length: int,
        brk: int,
        time_ns: int = 0,
    ) -> None:
        if brk:  # brk(addr): growth past the last break this process asked for
            last = self._brk.get(pid)
            self._brk[pid] = brk
            length = brk - last if last is not None and brk > last else 0
        if length > 0:
            acc = self._window.setdefault((pid, comm, stack), [0, 0, time_ns])
            acc[1] += length

    def drop(self, pid: int) -> list[int]:
        self._brk.pop(pid, None)
        return []

    def take(self, now_ns: int, wall_ns: int) -> list[RawSample]:
        offset = wall_ns - now_ns  # samples timed at their first record (boot clock)
        out = [
            RawSample(pid, pid, 0, comm, (t or now_ns) + offset, n, stack, (), more=(grown,))
            for (pid, comm, stack), (n, grown, t) in self._window.items()
        ]
        self._window = {}
        return out
