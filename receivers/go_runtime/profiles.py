"""Go runtime records -> samples of six profile types; the live-goroutine table.

Two-valued profiles carry a count and a total (Go's own block profile: contentions and
delay), as ``value`` and ``more[0]`` (collector.model ProfileType.extra_values).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from collector.bpf.events import UNSAMPLED
from collector.model import ProfileType, RawSample
from receivers.go_runtime.events import (
    EV_ALLOC_SAMPLED,
    EV_CHAN,
    EV_CREATE,
    EV_GC,
    EV_SCHED,
    GO_EVENT,
    HEADER,
    MAX_FRAMES,
)

_NS = "nanoseconds"
GOROUTINES = ProfileType(
    name="goroutines",
    sample_type="goroutines",
    sample_unit="count",
    notes=("goroutines created in the window, at the go statement's stack",),
)
GOROUTINES_LIVE = ProfileType(
    name="goroutines_live",
    sample_type="goroutines",
    sample_unit="count",
    notes=(
        "goroutines alive at a snapshot (every live_interval), at their creating stack; only "
        "goroutines created while probed are known; a window holding several snapshots sums them",
    ),
)
SCHED_LATENCY = ProfileType(
    name="sched_latency",
    sample_type="sched_waits",
    sample_unit="count",
    extra_values=(("sched_latency", _NS),),
    default_sample_type="sched_latency",
    notes=(
        "runnable -> running of goroutines queued by runtime.runqput (readied or created) or "
        "goschedImpl (preempted, yielding); GC workers and goroutines woken by the network "
        "poller are not followed",
    ),
)
GC_PAUSE = ProfileType(
    name="gc_pause",
    sample_type="gc_pauses",
    sample_unit="count",
    extra_values=(("gc_pause", _NS),),
    default_sample_type="gc_pause",
    notes=("GC stop-the-world pauses (sweep and mark termination), at the stack that started "
           "the cycle (runtime.gcStart)",),
)  # fmt: skip
GO_ALLOC = ProfileType(
    name="go_alloc",
    sample_type="alloc_objects",
    sample_unit="count",
    extra_values=(("alloc_space", "bytes"),),
    default_sample_type="alloc_space",
)
CHAN_BLOCK = ProfileType(
    name="chan_block",
    sample_type="chan_blocks",
    sample_unit="count",
    extra_values=(("chan_block", _NS),),
    default_sample_type="chan_block",
    notes=("time parked in a channel operation or select until readied",),
)
_TWO_32 = float(1 << 32)
_KIND_TYPES = {EV_SCHED: SCHED_LATENCY, EV_GC: GC_PAUSE, EV_CHAN: CHAN_BLOCK}


DEFAULT_MEM_PROFILE_RATE = 512 * 1024  # Go's runtime.MemProfileRate unless the program sets it


def alloc_type(sampling: str, sample_bytes: int) -> ProfileType:
    every = (
        f"runtime.mallocgc and its size-specialised entry points, an allocation of s bytes "
        f"recorded with probability min(1, s/{sample_bytes}) and scaled by its inverse"
    )
    if sampling == "auto":
        note = (
            "per process: the allocations the Go runtime's heap profiler samples "
            "(runtime.profilealloc, one per runtime.MemProfileRate bytes on average, read from "
            "the program), scaled by 1/(1-exp(-size/rate)) as runtime/pprof does, when the "
            f"program can write a heap profile (e.g. imports net/http/pprof); else {every}"
        )
    else:
        note = every
    return ProfileType(
        name=GO_ALLOC.name,
        sample_type=GO_ALLOC.sample_type,
        sample_unit=GO_ALLOC.sample_unit,
        extra_values=GO_ALLOC.extra_values,
        default_sample_type=GO_ALLOC.default_sample_type,
        notes=(note,),
    )


class Stacks:
    """Equal stacks share one tuple (interned by their bytes, bounded)."""

    def __init__(self, limit: int = 65536) -> None:
        self._known: dict[bytes, tuple[int, ...]] = {}
        self._limit = limit

    def get(self, view: memoryview, n: int) -> tuple[int, ...]:
        raw = bytes(view[HEADER : HEADER + 8 * n])
        got = self._known.get(raw)
        if got is None:
            got = tuple(memoryview(raw).cast("Q"))
            if len(self._known) >= self._limit:
                self._known.clear()
            self._known[raw] = got
        return got


# runtime.g: atomicstatus is 8 bytes before goid in every supported version (144/152,
# 152/160, 144/152; the tests check it against DWARF); _Gdead = 6.
_STATUS_BEFORE_GOID = 8
_G_DEAD = 6
ReadMany = Callable[[list[int], int], list["bytes | None"]]


@dataclass(slots=True)
class LiveGoroutines:
    """Goroutines created while probed: (pid -> goid -> (g pointer, stack, comm)).

    Nothing traps at a goroutine's exit: which ones still live is read from their runtime.g
    (``prune``: goid unchanged and status not dead; a g is reused, never freed, so an ended
    goroutine's g is either dead or carries another goid) before every snapshot, and when
    the table fills up."""

    limit: int
    by_pid: dict[int, dict[int, tuple[int, tuple[int, ...], str]]] = field(default_factory=dict)
    size: int = 0

    def add(self, pid: int, goid: int, g: int, stack: tuple[int, ...], comm: str) -> bool:
        if self.size >= self.limit:
            return False
        gs = self.by_pid.setdefault(pid, {})
        if goid not in gs:
            self.size += 1
        gs[goid] = (g, stack, comm)
        return True

    def prune(self, pid: int, goid_offset: int, read: ReadMany) -> int:
        """Forget ``pid``'s goroutines that ended; how many. ``read(addresses, size)`` reads
        the process's memory (ProcessLookupError: gone, all forgotten)."""
        gs = self.by_pid.get(pid)
        if not gs:
            return 0
        goids = list(gs)
        try:
            raw = read([gs[goid][0] + goid_offset - _STATUS_BEFORE_GOID for goid in goids], 16)
        except ProcessLookupError:
            n = len(gs)
            self.drop_process(pid)
            return n
        ended = 0
        for goid, r in zip(goids, raw, strict=True):
            if r is None or _ended(r, goid):
                del gs[goid]
                ended += 1
        self.size -= ended
        return ended

    def drop_process(self, pid: int) -> None:
        self.size -= len(self.by_pid.pop(pid, {}))

    def snapshot(self, time_ns: int) -> list[RawSample]:
        out = []
        for pid, gs in self.by_pid.items():
            counts: dict[tuple[int, ...], list] = {}
            for _g, stack, comm in gs.values():
                c = counts.get(stack)
                if c is None:
                    counts[stack] = [1, comm]
                else:
                    c[0] += 1
            for stack, (n, comm) in counts.items():
                out.append(RawSample(pid, pid, 0, comm, time_ns, n, stack))
        return out


def _ended(raw: bytes, goid: int) -> bool:
    status = int.from_bytes(raw[0:4], "little") & ~0x1000  # the scan bit
    return int.from_bytes(raw[8:16], "little") != goid or status == _G_DEAD


def decode(
    view: memoryview,
    stacks: Stacks,
    comm_of: dict[bytes, str],
    boot_offset: int,
    rounding: Rounding,
) -> tuple[int, int, int, RawSample]:
    """(kind, goid, nframes, sample) of one sample record; the sample's values are set for
    its kind (alloc scaled by its recording probability, rounded by ``rounding``)."""
    time_ns, value, goid, kind, _flags, pid, tid, cpu, n, threshold, aux, raw_comm = (
        GO_EVENT.unpack_from(view)
    )
    n = min(n, MAX_FRAMES - 1, (len(view) - HEADER) // 8)
    comm = comm_of.get(raw_comm)
    if comm is None:
        comm = raw_comm.split(b"\0", 1)[0].decode(errors="replace")
        if len(comm_of) > 4096:
            comm_of.clear()
        comm_of[raw_comm] = comm
    stack = stacks.get(view, n)
    when = time_ns + boot_offset
    if kind == EV_CREATE:
        return kind, goid, n, RawSample(pid, tid, cpu, comm, when, 1, stack)
    if kind == EV_ALLOC_SAMPLED:
        scale = heap_sample_scale(value, aux or DEFAULT_MEM_PROFILE_RATE)
        count, total = rounding.scaled((kind, pid, stack), 1, value, scale)
        return kind, goid, n, RawSample(pid, tid, cpu, comm, when, count, stack, more=(total,))
    # Recorded with probability threshold / 2**32 (alloc: by size; sched and chan: the
    # adaptive rate limit): scaled by its inverse, totals stay unbiased.
    if threshold >= UNSAMPLED or threshold == 0:
        return kind, goid, n, RawSample(pid, tid, cpu, comm, when, 1, stack, more=(value,))
    count, total = rounding.scaled((kind, pid, stack), 1, value, _TWO_32 / threshold)
    return kind, goid, n, RawSample(pid, tid, cpu, comm, when, count, stack, more=(total,))


def heap_sample_scale(size: int, rate: int) -> float:
    """1 / the probability that the runtime's heap profiler samples an allocation of ``size``
    bytes at ``rate`` (a Poisson process in bytes: 1 - exp(-size/rate)); runtime/pprof's
    scaleHeapSample. A rate of 1 samples every allocation."""
    if rate <= 1 or size <= 0:
        return 1.0
    return 1.0 / -math.expm1(-size / rate)


class Rounding:
    """Scaled values as integers, each (kind, process, stack)'s running total kept within 1 of
    the exact one, like runtime/pprof's scaling of a bucket's totals: a carry per key, started
    uniform in [0, 1) so that floor(total + carry) is unbiased. Rounding each sample on its own
    at random is unbiased too, but its noise adds up: 800 allocations of 32 KiB at a 64 KiB
    rate (2.54 objects each) came to 15 objects (0.7 %) off Go's own profile as one standard
    deviation, 3.4 % once. Bounded: past ``limit`` keys the carries start over."""

    def __init__(self, limit: int = 16384) -> None:
        self._limit = limit
        self._carry: dict[tuple[int, int, tuple[int, ...]], list[float]] = {}

    def __len__(self) -> int:
        return len(self._carry)

    def scaled(
        self, key: tuple[int, int, tuple[int, ...]], count: int, total: int, scale: float
    ) -> tuple[int, int]:
        """(count, total) times ``scale`` as integers."""
        carry = self._carry.get(key)
        if carry is None:
            if len(self._carry) >= self._limit:
                self._carry.clear()
            carry = self._carry[key] = [random.random(), random.random()]
        y = count * scale + carry[0]
        z = total * scale + carry[1]
        n, t = int(y), int(z)
        carry[0] = y - n
        carry[1] = z - t
        return n, t


def profile_for(kind: int) -> ProfileType | None:
    return _KIND_TYPES.get(kind)
