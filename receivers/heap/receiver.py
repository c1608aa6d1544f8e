"""The heap receiver: sampled allocations, in-use memory and leaks per stack, or page faults.

BPF (bpf/heap.bpf.c) samples allocations by bytes and sends one record per sampled allocation
and per free of a sampled block; this side keeps the outstanding sampled blocks with their
stacks (state.HeapState) and emits one batch per ``interval``: allocations of the window and
a snapshot of what is outstanding at its end, in Go's heap profile value types. Targets are
attached per process (targets.py); the reader thread and its failure rules follow
collector/bpf/stack_receiver.py, whose reader this one does not share because its records,
windows and per-process probes differ.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from collector.bpf.events import (
    COMMON_COUNTERS,
    EVENT,
    EVENT_EXEC,
    EVENT_EXIT,
    F_NEW_PID,
    F_USER_FRAMES,
    F_USER_SPILL,
    NEG_EFAULT,
    NEG_ENOENT,
)
from collector.bpf.frames import FrameDecoder
from collector.bpf.loader import LoadedProgram
from collector.bpf.ringbuf import RingBuffer
from collector.bpf.stacks import STAMP_AFTER_WALK, StackReader
from collector.bpf.syscall import name_thread
from collector.bpf.unwinding import TableUnwinding
from collector.component import CreateSettings
from collector.model import MISSING_USER_STACK, RawBatch
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
    exe_id,
    mapped_name,
    processes_running,
)

if TYPE_CHECKING:
    from collector.host import Host

_U32 = struct.Struct("<I")
_KEY = struct.Struct("<IIQ")  # struct alloc_key
COLLISION_CLEAR_S = 10.0
MAX_FAILED_DRAINS = 5
_MISSING = (MISSING_USER_STACK,)


class HeapReceiver:
    def __init__(self, settings: CreateSettings, config: HeapConfig) -> None:
        self._id = settings.id
        self._log = settings.logger or logging.getLogger(__name__)
        self._consumer = settings.consumer
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
        self._counter_names = COMMON_COUNTERS + PROGRAM_COUNTERS
        self._counter_prev = [0] * len(self._counter_names)
        self._batch_counters: dict[str, int] = {}
        self._host: Host | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._prog: LoadedProgram | None = None
        self._ring: RingBuffer | None = None
        self._stacks: StackReader | None = None
        self._spill: StackReader | None = None
        self._probes: Probes | None = None
        self._unwind: TableUnwinding | None = None  # page_faults: stacks from tables
        self._frames = FrameDecoder()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._resolving: dict[int, float] = {}  # exec'd targets without their allocator yet
        self._allocators: dict[tuple[int, int], str] = {}  # executable -> allocator path
        self._comms: dict[bytes, str] = {}
        self._binary = exe_id(config.binary) if config.binary else None
        self._boot_offset = 0
        self._last_clear = time.monotonic()
        self._collisions = 0
        self._closed = False
        self._failure: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: Host) -> None:
        self._host = host
        self._loop = asyncio.get_running_loop()
        self._prog = await asyncio.to_thread(self._load)
        try:
            if "unwind_rows" in self._prog.maps:
                self._unwind = TableUnwinding(self._prog, self._id, self._log, self._count)
            if not self._faults:
                table = self._prog.map("exp_table")
                for i, d in enumerate(exp_table(self._config.sample_bytes)):
                    table.update(_U32.pack(i), struct.pack("<Q", d))
                progs = {
                    a["target"]: a["fd"] for a in self._prog.attachments if a["kind"] == "program"
                }
                self._probes = Probes(progs, self._log, self._count)
            self._ring = RingBuffer(self._prog.map("events"))
            self._stacks = StackReader(self._prog.map("stacks"), walk_window=STAMP_AFTER_WALK)
            self._spill = StackReader(self._prog.map("stacks_spill"), walk_window=STAMP_AFTER_WALK)
            pids = self._config.pids or list(processes_running(self._config.binary or ""))
            await asyncio.to_thread(self._add_targets, pids)
            if self._unwind is not None and pids:  # their tables before their first fault
                await asyncio.to_thread(self._unwind.preload, pids)
        except BaseException:
            self._close_fds()
            raise
        self._thread = threading.Thread(target=self._run, name=f"{self._id}-reader", daemon=True)
        self._thread.start()
        self._log.info(
            "heap receiver started id=%s mode=%s targets=%d sample_bytes=%d load_seconds=%.2f",
            self._id,
            self._config.mode,
            len(pids),
            self._config.sample_bytes,
            self._prog.load_seconds,
        )

    def _load(self) -> LoadedProgram:
        return load_program(self._config, self._id, self._log, self._count)

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._stop.set()
            if self._ring is not None:
                self._ring.wake()
            await asyncio.to_thread(self._thread.join)
            await asyncio.sleep(0)
        self._release(self._failure is None, self._hand_on)
        self._log.info("heap receiver stopped id=%s", self._id)

    def _hand_on(self, batch: RawBatch | None) -> None:
        if batch is not None and self._consumer is not None:
            self._consumer.consume(batch)

    def _release(self, final_drain: bool, hand_on: Callable[[RawBatch | None], None]) -> None:
        """Detach every probe, read what they left, hand on the last window, close."""
        if self._probes is not None:
            self._probes.close()
        if self._prog is not None:
            self._prog.detach()
        if self._ring is not None and not self._ring.closed:
            if final_drain:
                self._drain()
            hand_on(self._take_batch())
        self._close_fds()

    def _close_fds(self) -> None:
        if self._probes is not None:
            self._probes.close()
        if self._unwind is not None:
            self._unwind.close()
            self._unwind = None
        if self._ring is not None and not self._ring.closed:
            self._ring.close()
        if self._prog is not None:
            self._prog.close()

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

    def _on_exec(self, pid: int, flags: int) -> None:
        assert self._host is not None and self._prog is not None
        if not flags & F_CANDIDATE:  # a target exec'd: its heap is gone
            self._host.processes.exec(pid)
            if self._unwind is not None:
                self._unwind.process_exec(pid)
            self._forget(pid)
            if self._config.binary is not None and exe_id(pid) != self._binary:
                self._prog.map("pid_filter").delete(_U32.pack(pid))
                return
        else:
            if self._binary is None and self._config.binary:  # created after the start
                self._binary = exe_id(self._config.binary)
            if self._binary is None or exe_id(pid) != self._binary:
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

    def _run(self) -> None:
        name_thread(f"{self._id}-reader")
        try:
            self._read_until_stopped()
        except BaseException as exc:
            self._failed(exc)

    def _read_until_stopped(self) -> None:
        assert self._ring is not None
        c = self._config
        next_window = time.monotonic() + c.interval
        failures = 0
        while not self._stop.is_set():
            wait = min(c.drain_interval, max(0.0, next_window - time.monotonic()))
            self._ring.poll(0.01 if self._resolving else wait)
            if self._stop.is_set():
                return
            try:
                self._drain()
                self._retry_resolving()
                if time.monotonic() >= next_window:
                    next_window += c.interval
                    self._emit(self._take_batch())
                failures = 0
            except Exception as exc:
                failures += 1
                self._count("reader_errors")
                if failures >= MAX_FAILED_DRAINS:
                    raise RuntimeError(f"{failures} drains in a row failed") from exc
                if failures == 1:
                    self._log.warning("heap receiver drain failed id=%s error=%r", self._id, exc)
                self._stop.wait(0.1 * 2 ** (failures - 1))

    def _failed(self, exc: BaseException) -> None:
        self._failure = exc
        cause = exc.__cause__ or exc
        message = f"reader failed: {type(cause).__name__}: {cause}"
        self._count("receiver_failed")
        self._log.error("heap receiver failed id=%s: %s", self._id, message, exc_info=cause)
        self._emit(self._take_batch())
        if self._config.optional:
            self._release(False, self._emit)
        elif self._host is not None:
            self._host.report_fatal(self._id, message)

    def _emit(self, batch: RawBatch | None) -> None:
        if batch is None or self._consumer is None or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._consumer.consume, batch)
        except RuntimeError:
            self._count("batches_lost_at_shutdown")

    def _take_batch(self) -> RawBatch | None:
        now = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        samples = self._state.take(now, now + self._boot_offset)
        if not samples and not self._batch_counters:
            return None
        # window_end: the in-use snapshot is this window's; the pipeline must not sum two.
        batch = RawBatch(
            self._profile_type, samples, self._id, self._batch_counters, window_end=True
        )
        self._batch_counters = {}
        return batch

    def _count(self, name: str, n: int = 1) -> None:
        if not n:
            return
        self._batch_counters[name] = self._batch_counters.get(name, 0) + n
        if self._host is not None:
            self._host.counters.add(self._id, name, n)

    def _drain(self) -> None:
        assert self._ring is not None and self._stacks is not None and self._spill is not None
        self._boot_offset = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        self._ring.drain(self._on_record)
        self._collisions += self._read_counters()
        if self._unwind is not None:
            self._unwind.read_counters()
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

    _lost_prev = 0

    def _read_counters(self) -> int:
        assert self._prog is not None
        counters = self._prog.map("counters")
        collisions = 0
        for i, name in enumerate(self._counter_names):
            value = counters.percpu_u64_sum(_U32.pack(i))
            delta = value - self._counter_prev[i]
            self._count(name, delta)
            self._counter_prev[i] = value
            if name.endswith("_stack_collision"):
                collisions += delta
        return collisions

    def _on_record(self, view: memoryview) -> None:
        time_ns, value, kind, flags, pid, _tid, _cpu, ustack, _k, _t, raw_comm = EVENT.unpack_from(
            view
        )
        # Records with their frames (table-unwound faults) carry no address.
        addr = 0 if flags & F_USER_FRAMES else HEAP_ADDR.unpack_from(view, EVENT.size)[0]
        if kind == EVENT_EXEC:
            self._on_exec(pid, flags)
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
        else:
            stack = self._user_stack(ustack, flags, time_ns)
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

    def _user_stack(self, stack_id: int, flags: int, walked: int) -> tuple[int, ...]:
        if stack_id >= 0:
            reader = self._spill if flags & F_USER_SPILL else self._stacks
            stack = reader.get(stack_id, walked)  # type: ignore[union-attr]
            return _MISSING if stack is None else stack
        if stack_id in (NEG_EFAULT, NEG_ENOENT):
            return ()
        return _MISSING
