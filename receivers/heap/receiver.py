"""The heap receiver: sampled allocations, in-use memory and leaks per stack, or page faults.

BPF (bpf/heap.bpf.c) samples allocations by bytes and sends one record per sampled allocation
and per free of a sampled block; this side keeps the outstanding sampled blocks with their
stacks (state.HeapState) and emits one batch per ``interval``: allocations of the window and
a snapshot of what is outstanding at its end, in Go's heap profile value types. Targets are
attached per process (targets.py); the reader thread and its failure rules are
collector/bpf/reader.py's, shared with the other BPF receivers.
"""

from __future__ import annotations

import asyncio
import errno
import struct
import time

from collector.bpf.events import (
    COMMON_COUNTERS,
    EVENT,
    EVENT_EXEC,
    EVENT_EXIT,
    F_NEW_PID,
    F_USER_FRAMES,
)
from collector.bpf.frames import FrameDecoder, user_stack
from collector.bpf.loader import LoadedProgram
from collector.bpf.reader import RingReader
from collector.bpf.ringbuf import RingBuffer
from collector.bpf.stacks import STAMP_AFTER_WALK, StackReader
from collector.bpf.targets import BinaryTarget, exe_id
from collector.bpf.unwinding import TableUnwinding
from collector.component import CreateSettings
from collector.model import RawBatch
from collector.unwind.layout import NO_MAPPING
from receivers.heap.config import HeapConfig
from receivers.heap.events import (
    F_BRK,
    F_CANDIDATE,
    F_UNTRACKED,
    HEAP_ADDR,
    HEAP_ALLOC,
    HEAP_FAULT,
    HEAP_FREE,
    HEAP_GROW,
    PROGRAM_COUNTERS,
)
from receivers.heap.program import exp_table, load_program
from receivers.heap.state import FaultState, HeapState, fault_profile_type, heap_profile_type
from receivers.heap.targets import (
    RESOLVE_WINDOW_S,
    Probes,
    TargetProblem,
    allocator_path,
    mapped_name,
)

_U32 = struct.Struct("<I")
_KEY = struct.Struct("<IIQ")  # struct alloc_key
COLLISION_CLEAR_S = 10.0


class HeapReceiver(RingReader):
    program = "heap"

    def __init__(self, settings: CreateSettings, config: HeapConfig) -> None:
        super().__init__(
            settings,
            optional=config.optional,
            interval=config.interval,
            counters=COMMON_COUNTERS + PROGRAM_COUNTERS,
        )
        self._config = config
        self._faults = config.mode == "page_faults"
        self._profile_type = (
            fault_profile_type()
            if self._faults
            else heap_profile_type(config.sample_bytes, config.min_age)
        )
        self._state: HeapState | FaultState = (
            FaultState()
            if self._faults
            else HeapState(config.sample_bytes, config.min_age, 2 * config.outstanding_map_size)
        )
        self._stacks: StackReader | None = None
        self._spill: StackReader | None = None
        self._probes: Probes | None = None
        self._unwind: TableUnwinding | None = None  # page_faults: stacks from tables
        self._frames = FrameDecoder()
        self._resolving: dict[int, float] = {}  # exec'd targets without their allocator yet
        self._allocators: dict[tuple[int, int], str] = {}  # executable -> allocator path
        self._comms: dict[bytes, str] = {}
        self._binary = BinaryTarget(config.binary) if config.binary else None
        self._targets_at_start = 0
        self._last_clear = time.monotonic()
        self._collisions = 0
        self._lost_prev = 0

    # -- lifecycle (the reader's rules: collector/bpf/reader.py) ---------------------------

    def _load(self) -> LoadedProgram:
        return load_program(self._config, self._id, self._log, self._count)

    async def _setup(self) -> None:
        assert self._prog is not None
        if "unwind_rows" in self._prog.maps:
            cfg = self._config
            assert self._host is not None
            self._unwind = TableUnwinding.for_receiver(
                self._prog, self._id, self._log, self._count, cfg, self._host.processes
            )
        if not self._faults:
            table = self._prog.map("exp_table")
            for i, d in enumerate(exp_table(self._config.sample_bytes)):
                table.update(_U32.pack(i), struct.pack("<Q", d))
            progs = {a["target"]: a["fd"] for a in self._prog.attachments if a["kind"] == "program"}
            self._probes = Probes(progs, self._log, self._count)
        self._ringbuf = RingBuffer(self._prog.map("events"))
        self._stacks = StackReader(self._prog.map("stacks"), walk_window=STAMP_AFTER_WALK)
        self._spill = StackReader(self._prog.map("stacks_spill"), walk_window=STAMP_AFTER_WALK)
        pids = self._config.pids or (self._binary.running() if self._binary else [])
        self._targets_at_start = len(pids)
        await asyncio.to_thread(self._add_targets, pids)
        if self._unwind is not None and pids:  # their tables before their first fault
            await asyncio.to_thread(self._unwind.preload, pids)

    def describe(self) -> str:
        c = self._config
        return f"mode={c.mode} targets={self._targets_at_start} sample_bytes={c.sample_bytes}"

    def _detach(self) -> None:
        if self._probes is not None:
            self._probes.close()
        super()._detach()

    def _close(self) -> None:
        if self._probes is not None:
            self._probes.close()
        if self._unwind is not None:
            self._unwind.close()
            self._unwind = None
        super()._close()

    # -- targets ---------------------------------------------------------------------------

    def _add_targets(self, pids: list[int]) -> None:
        for pid in pids:
            self._add_target(pid, 0.0)

    def _add_target(self, pid: int, deadline: float) -> None:
        """Make ``pid`` a target; ``deadline`` (monotonic): it just exec'd, so its allocator
        may not be mapped yet: try again until then."""
        assert self._prog is not None
        self._prog.map("pid_filter").update(_U32.pack(pid), b"\x01")
        if self._probes is None:  # page_faults: the pid filter is all
            return
        try:
            path = self._allocator(pid)
            if path is None:
                if deadline and time.monotonic() < deadline:
                    self._resolving[pid] = deadline
                    return
                raise TargetProblem(f"allocator {self._config.allocator!r} is not mapped")
            n = self._probes.attach(pid, path)
        except TargetProblem as exc:
            refused = getattr(exc.__cause__, "errno", None) == errno.EINVAL
            if not deadline and refused:
                # Another tool's uprobes at these addresses (targets.py) may be on their way
                # out: give the kernel a moment before giving up on this target.
                deadline = time.monotonic() + RESOLVE_WINDOW_S
            if deadline and time.monotonic() < deadline:
                # Just exec'd: the loader may be mapping the allocator right now (EINVAL seen
                # then too); try again on the next pass.
                self._resolving[pid] = deadline
                return
            self._resolving.pop(pid, None)
            self._count("targets_failed")
            self._log.warning(
                "heap receiver: target not profiled id=%s pid=%d: %s", self._id, pid, exc
            )
            return
        self._resolving.pop(pid, None)
        self._count("targets_attached")
        self._log.info(
            "heap target attached id=%s pid=%d allocator=%s uprobes=%d", self._id, pid, path, n
        )

    def _allocator(self, pid: int) -> str | None:
        exe = exe_id(pid)
        found = allocator_path(pid, self._config.allocator)
        if found is None and exe is not None and exe in self._allocators:
            # Same executable as a process resolved before: its loader will map the same file
            # (not mapped yet, so it is named through the target's root).
            return f"/proc/{pid}/root{self._allocators[exe]}"
        if found is not None and exe is not None and found.startswith(f"/proc/{pid}/map_files"):
            name = mapped_name(pid, self._config.allocator)
            if name is not None and len(self._allocators) < 1024:
                self._allocators[exe] = name
        return found

    def _retry_resolving(self) -> None:
        for pid, deadline in list(self._resolving.items()):
            self._add_target(pid, deadline)

    def _on_exec(self, pid: int, flags: int, time_ns: int) -> None:
        assert self._host is not None and self._prog is not None
        if not flags & F_CANDIDATE:  # a target exec'd: its heap is gone
            # The new image's records are those after the exec itself, not after this read.
            self._host.processes.exec(pid, time_ns + self._boot_offset)
            if self._unwind is not None:
                self._unwind.process_exec(pid)
            self._forget(pid)
            if self._binary is not None and not self._binary.runs(pid):
                self._prog.map("pid_filter").delete(_U32.pack(pid))
                return
        elif self._binary is None or not self._binary.runs(pid):
            return  # another program with the same file name
        self._add_target(pid, time.monotonic() + RESOLVE_WINDOW_S)

    def _on_exit(self, pid: int) -> None:
        assert self._host is not None
        self._host.processes.exit(pid)
        if self._unwind is not None:
            self._unwind.process_exit(pid)
        self._forget(pid)

    def _forget(self, pid: int) -> None:
        """Free a process's state: its blocks here and in BPF, its probes."""
        assert self._prog is not None
        self._resolving.pop(pid, None)
        if self._probes is not None:
            self._probes.detach(pid)
        outstanding = self._prog.maps.get("outstanding")
        for addr in self._state.drop(pid):
            if outstanding is not None:
                outstanding.delete(_KEY.pack(pid, 0, addr))

    # -- reader thread ---------------------------------------------------------------------

    def _poll_timeout(self) -> float:
        # A target that just exec'd is retried soon: its allocator is being mapped.
        if self._resolving:
            return 0.01
        return min(self._config.drain_interval, super()._poll_timeout())

    def _after_drain(self) -> None:
        self._retry_resolving()
        if time.monotonic() >= self._next_emit:
            self._next_emit += self._interval  # windows of equal length, not drifting
            self._emit(self._take_batches())

    def _take_batches(self) -> list[RawBatch]:
        now = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        samples = self._state.take(now, now + self._boot_offset)
        if not samples and not self._batch_counters:
            return []
        # window_end: the in-use snapshot is this window's; the pipeline must not sum two.
        return [
            RawBatch(self._profile_type, samples, self._id, self._take_counters(), window_end=True)
        ]

    def _read_more_counters(self) -> None:
        if self._unwind is not None:
            self._unwind.read_counters()

    def _drain(self) -> None:
        assert self._ringbuf is not None and self._stacks is not None and self._spill is not None
        self._set_boot_offset()
        self._ringbuf.drain(self._on_record)
        if self._unwind is not None:
            self._unwind.wake()  # once for the loads this drain queued
        self._collisions += self._read_counters()
        now = time.monotonic()
        if (
            self._stacks.full()
            or self._spill.full()
            or (self._collisions and now - self._last_clear >= COLLISION_CLEAR_S)
        ):
            # Stacks of outstanding blocks were resolved when they were read: clearing
            # loses nothing kept here.
            self._stacks.clear()
            self._spill.clear()
            self._last_clear = now
            self._collisions = 0
        self._count("stack_lost", self._stacks.lost + self._spill.lost - self._lost_prev)
        self._lost_prev = self._stacks.lost + self._spill.lost

    def _on_record(self, view: memoryview) -> None:
        time_ns, value, kind, flags, pid, _tid, _cpu, ustack, _k, _t, raw_comm = EVENT.unpack_from(
            view
        )
        # Records with their frames (table-unwound faults) carry no address.
        addr = 0 if flags & F_USER_FRAMES else HEAP_ADDR.unpack_from(view, EVENT.size)[0]
        if kind == EVENT_EXEC:
            self._on_exec(pid, flags, time_ns)
            return
        if kind == EVENT_EXIT:
            self._on_exit(pid)
            return
        assert self._host is not None
        if flags & F_NEW_PID:
            self._host.processes.observe(pid)
            if self._unwind is not None:
                self._unwind.process_seen(pid)
        if kind == HEAP_FREE:
            if not self._state.free(pid, addr):  # type: ignore[union-attr]
                self._count("frees_unknown")
            return
        comm = self._comms.get(raw_comm)
        if comm is None:
            comm = raw_comm.split(b"\0", 1)[0].decode(errors="replace")
            if len(self._comms) > 4096:
                self._comms.clear()
            self._comms[raw_comm] = comm
        if flags & F_USER_FRAMES:
            stack = self._frames.user(view, ustack)
            if self._unwind is not None and (ustack >> 8) & 0xFF == NO_MAPPING:
                self._unwind.mapping_missed(pid)  # code mapped since the process was loaded
        else:
            stack = user_stack(self._stacks, self._spill, ustack, flags, time_ns)  # type: ignore[arg-type]
        state = self._state
        if kind == HEAP_ALLOC and isinstance(state, HeapState):
            problem = state.alloc(pid, comm, addr, value, stack, time_ns, not flags & F_UNTRACKED)
            if problem:
                self._count(problem)
        elif kind == HEAP_FAULT and isinstance(state, FaultState):
            state.fault(pid, comm, stack, time_ns)
        elif kind == HEAP_GROW and isinstance(state, FaultState):
            brk = flags & F_BRK
            state.grow(pid, comm, stack, 0 if brk else value, value if brk else 0, time_ns)
        else:
            self._count("records_unknown")
