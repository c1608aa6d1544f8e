"""The part every stack-sampling receiver shares: load, drain, counters, stacks.

A subclass names its program and attachments, its own counters and profile type; the BPF
side (bpf/common.h) writes one 64-byte event per sample into a ring buffer. The reader thread
(collector/bpf/reader.py) waits on it (epoll, timeout ``drain_interval``); BPF wakes it at
once only for the first event of a new process (so its mappings are snapshotted while it
lives) and for exec/exit. Samples are handed to the event loop as one RawBatch per
``drain_interval``. Shutdown detaches the programs first, then drains, so every event the
kernel produced is handed on.
"""

from __future__ import annotations

import asyncio
import re
import struct
import time
from typing import TYPE_CHECKING, ClassVar

from collector.bpf.attach import AttachSpec
from collector.bpf.events import (
    COMMON_COUNTERS,
    COPY,
    COPY_OFFSET,
    EVENT,
    EVENT_EXEC,
    EVENT_EXIT,
    F_KERNEL_FRAMES,
    F_KERNEL_MODE,
    F_KERNEL_SPILL,
    F_NEW_PID,
    F_STACK_COPY,
    F_USER_FRAMES,
    KNOWN_EXECED,
    NEG_EFAULT,
    NEG_ENOENT,
)
from collector.bpf.frames import FrameDecoder, user_stack
from collector.bpf.held_copies import CopyFlow
from collector.bpf.loader import LoadedProgram, load
from collector.bpf.reader import MAX_FAILED_DRAINS, RingReader
from collector.bpf.ringbuf import HEADER_SIZE, RingBuffer
from collector.bpf.stack_config import StackReceiverConfig
from collector.bpf.stacks import STAMP_BEFORE_WALK, StackReader
from collector.bpf.unwinding import TableUnwinding
from collector.component import CreateSettings
from collector.errors import RuntimeFailure
from collector.model import (
    MISSING_KERNEL_STACK,
    ProfileType,
    RawBatch,
    RawSample,
)
from collector.proc.limits import raise_nofile_limit
from collector.proc.pidns import pidns_defines
from collector.unwind.layout import NO_MAPPING, NO_PROCESS
from collector.unwind.walk import StackCopy

if TYPE_CHECKING:
    from collector.host import Host

_U32 = struct.Struct("<I")
__all__ = ["MAX_FAILED_DRAINS", "StackReceiver"]  # the reader's limit, named here by tests
_RECORD_BYTES = EVENT.size + HEADER_SIZE
# What StackReader (lost, clears) and RingBuffer (discarded, failed) count, reported as:
_READER_COUNTS = ("stack_lost", "stack_map_clears", "ringbuf_discarded", "events_failed")
COLLISION_CLEAR_S = 10.0
COSTLY_COLLISIONS = 0.01  # of the samples since the last clear: clear sooner
COSTLY_CLEAR_S = 1.0
CLEAR_STEP_S = 0.005  # between steps of a clear
MAX_DEFERRED = 65536  # filtered new pids awaiting unwind tables (exits remove them)
_MISSING_KERNEL = (MISSING_KERNEL_STACK,)


class StackReceiver(RingReader):
    """Base of the BPF receivers that emit raw stacks (cpu, offcpu)."""

    program: ClassVar[str]  # bpf/<program>.bpf.c
    program_counters: ClassVar[tuple[str, ...]] = ()  # names of counters after C_COMMON
    # A kernel stack id of -EFAULT is "no kernel stack, by design" unless the event's flags
    # say the sample interrupted kernel code (cpu) or the program always walks it (offcpu).
    kernel_efault_is_missing: ClassVar[bool] = False
    # Where the stacks were walked relative to walk_stamp_ns() (see collector.bpf.stacks).
    walk_window: ClassVar[tuple[int, int]] = STAMP_BEFORE_WALK

    def __init__(
        self, settings: CreateSettings, config: StackReceiverConfig, profile_type: ProfileType
    ) -> None:
        super().__init__(
            settings,
            optional=config.optional,
            interval=config.drain_interval,
            counters=COMMON_COUNTERS + self.program_counters,
        )
        self._config = config
        self._profile_type = profile_type
        self._comm_re = re.compile(config.comm) if config.comm else None
        self._comm_ok: dict[bytes, str | None] = {}  # raw comm -> str, or None when filtered
        self._stacks: StackReader | None = None
        self._spill: StackReader | None = None  # stacks that collided in self._stacks
        self._unwind: TableUnwinding | None = None  # user stacks from tables (bpf/unwind.h)
        self._pending: list[RawSample] = []
        self._reader_prev = (0, 0, 0, 0)
        self._peak_pending = 0
        self._last_clear = time.monotonic()
        self._events_since_clear = self._collisions_since_clear = 0
        self._fallback = False  # unwind: auto fell back to frame pointers at load
        # Host.pressure (memory_limiter): keep sampling_factor of the samples, evenly spread
        # (a credit, not a coin: the kept share is exact), the rest counted per drain.
        self._factor = 1.0
        self._credit = 0.0
        self._pressure_dropped = 0
        # New pids whose first events the comm filter dropped: their unwind tables wait
        # until a sample of theirs passes it (building them for every filtered process would
        # delay the wanted ones' by seconds).
        self._unwind_deferred: set[int] = set()
        self._frames = FrameDecoder()  # stacks carried in the record (F_*_FRAMES)
        self._copy_flow: CopyFlow | None = None  # with stack copies: what BPF is told

    # -- what a subclass provides ----------------------------------------------------------

    def defines(self) -> dict[str, int]:
        return self._config.common_defines()

    def attachments(self) -> list[AttachSpec]:
        raise NotImplementedError

    def value(self, raw: int, threshold: int) -> int:
        """The sample's value from the event's; ``threshold`` is its weight_threshold (it was
        recorded with probability threshold / 2**32, events.UNSAMPLED: always)."""
        return raw

    def walk_stamp_ns(self, time_ns: int, raw: int) -> int:
        """The stamp (CLOCK_BOOTTIME) next to which the event's stacks were walked, from its
        time and raw value: by default its time, stamped just before the walks."""
        return time_ns

    # -- lifecycle (the reader's rules: collector/bpf/reader.py) ---------------------------

    async def start(self, host: Host) -> None:
        raise_nofile_limit(self._log)  # once per process: pins need fds (collector.proc.limits)
        await super().start(host)

    async def _setup(self) -> None:
        assert self._prog is not None
        if "unwind_rows" in self._prog.maps:  # built with UNWIND_TABLES
            cfg = self._config
            assert self._host is not None
            self._unwind = TableUnwinding.for_receiver(
                self._prog, self._id, self._log, self._count, cfg, self._host.processes
            )
            if "unwind_copy_flow" in self._prog.maps:  # built with UNWIND_STACK_COPY
                self._copy_flow = CopyFlow(self._prog.map("unwind_copy_flow"))
            if self._config.pids:  # known now: their tables need not wait
                await asyncio.to_thread(self._unwind.preload, self._config.pids)
        if self._config.pids:
            pid_filter = self._prog.map("pid_filter")
            known = self._prog.map("known_pids")
            for pid in self._config.pids:
                # KNOWN_EXECED: BPF reports their exec and exit even before their first
                # event (which still announces them): an exec reloads their tables at once.
                known.update(_U32.pack(pid), KNOWN_EXECED)
                pid_filter.update(_U32.pack(pid), b"\x01")
        self._ringbuf = RingBuffer(self._prog.map("events"))
        self._stacks = StackReader(self._prog.map("stacks"), walk_window=self.walk_window)
        self._spill = StackReader(self._prog.map("stacks_spill"), walk_window=self.walk_window)

    def _load(self) -> LoadedProgram:
        """Load the program; with ``unwind: auto``, a kernel that refuses the table walker
        (verifier, missing helper) gets the frame-pointer build instead (logged, counted)."""
        # Pids as this collector's /proc numbers them (bpf/pidns.h): inside a PID namespace
        # (a sidecar) BPF would otherwise hand over host pids that /proc here cannot read.
        defines = {**self.defines(), **pidns_defines()}
        try:
            return load(self.program, defines, self.attachments())
        except RuntimeFailure as exc:
            if defines.get("UNWIND_TABLES") and defines.get("UNWIND_STACK_COPY"):
                # The copy adds ~8 % to the walker's verification: a kernel that refuses
                # the two together may take the walker alone.
                try:
                    prog = load(
                        self.program, {**defines, "UNWIND_STACK_COPY": 0}, self.attachments()
                    )
                except RuntimeFailure:
                    pass
                else:
                    self._log.warning(
                        "%s receiver: stack copies unavailable id=%s (%s); samples taken "
                        "before a process's tables are loaded keep their frame-pointer stack",
                        self.program,
                        self._id,
                        exc,
                    )
                    self._count("unwind_stack_copy_unavailable")
                    return prog
            if not defines.get("UNWIND_TABLES") or self._config.unwind != "auto":
                raise
            self._log.warning(
                "%s receiver: table unwinding unavailable id=%s, using frame pointers: %s",
                self.program,
                self._id,
                exc,
            )
            self._count("unwind_unavailable")
            self._fallback = True
            return load(self.program, {**defines, "UNWIND_TABLES": 0}, self.attachments())

    def _last_read(self, final_drain: bool) -> None:
        """After a reader failure the ring is not read again: what it still holds is
        counted (events_unread)."""
        assert self._ringbuf is not None
        if final_drain:
            self._drain()
            if self._unwind is not None:  # samples still waiting for their tables go on now
                self._take_walked(self._unwind, expire=True)
        else:
            self._count("events_unread", self._ringbuf.pending() // _RECORD_BYTES)

    def _close(self) -> None:
        if self._copy_flow is not None:
            self._copy_flow.close()
            self._copy_flow = None
        if self._unwind is not None:
            self._unwind.close()
            self._unwind = None
        super()._close()

    # -- reader thread ---------------------------------------------------------------------

    def _poll_timeout(self) -> float:
        wait = super()._poll_timeout()
        return min(wait, CLEAR_STEP_S) if self.clearing else wait

    def _failed(self, exc: BaseException) -> None:
        if self._stacks is not None:  # the last batch carries what the readers counted
            self._count_reader()
        super()._failed(exc)

    def _take_batches(self) -> list[RawBatch]:
        if not self._pending and not self._batch_counters:
            return []
        batch = RawBatch(self._profile_type, self._pending, self._id, self._take_counters())
        self._pending = []
        return [batch]

    def _read_more_counters(self) -> None:
        if self._unwind is not None:
            self._unwind.read_counters()

    def _drain(self) -> None:
        """Read every event, then the BPF counters, then maybe empty the stack map."""
        assert self._ringbuf is not None and self._stacks is not None
        self._set_boot_offset()
        # The fullest the buffer was seen (a gauge, counted by its increases): how close
        # the reader came to losing events.
        pending = self._ringbuf.pending() // _RECORD_BYTES
        if pending > self._peak_pending:
            self._count("ringbuf_peak_events", pending - self._peak_pending)
            self._peak_pending = pending
        self._follow_pressure()
        self._events_since_clear += self._ringbuf.drain(self._on_event)
        if self._unwind is not None:
            self._unwind.wake()  # once for the loads this drain queued
            self._take_walked(self._unwind)
            if self._copy_flow is not None:
                self._count(
                    "unwind_copies_bounded", self._copy_flow.publish(self._unwind.copies_paused)
                )
        if self._pressure_dropped:
            self._count("samples_dropped_memory_pressure", self._pressure_dropped)
            self._pressure_dropped = 0
        self._collisions_since_clear += self._read_counters()
        # A stack that collides in both maps stays unrecordable until its buckets are freed,
        # so collisions trigger a clear too: after COSTLY_CLEAR_S when they cost more than
        # 1 % of the samples (a hot stack lost), else at most every COLLISION_CLEAR_S (a clear
        # costs 2-3 bpf(2) calls per id, and as many lookups again after it). Both maps are
        # emptied together: the spill map only holds what collided with the main one's
        # current stacks.
        assert self._spill is not None
        now = time.monotonic()
        since = now - self._last_clear
        collided = self._collisions_since_clear
        if self.clearing:
            pass
        elif (
            self._stacks.full()
            or self._spill.full()
            or (collided and since >= COLLISION_CLEAR_S)
            or (collided > COSTLY_COLLISIONS * self._events_since_clear and since >= COSTLY_CLEAR_S)
        ):
            self._stacks.start_clear()
            self._spill.start_clear()
            self._last_clear = now
            self._events_since_clear = self._collisions_since_clear = 0
        # A step at a time, the ring read in between: a whole clear of thousands of ids
        # would leave it unread for 25-200 ms (more when the machine is busy).
        if self._stacks.clear_step():
            self._spill.clear_step()
        self._count_reader()

    def _take_walked(self, unwind: TableUnwinding, expire: bool = False) -> None:
        """Samples whose stack copies the worker has walked join the batch."""
        for sample in unwind.take_walked(expire):
            sample.user_stack = self._frames.share(sample.user_stack)
            self._pending.append(sample)

    def _follow_pressure(self) -> None:
        """Take in less while the memory_limiter says the collector is above its limits."""
        assert self._host is not None
        factor = self._host.pressure.sampling_factor
        if factor == self._factor:
            return
        self._log.warning(
            "%s receiver keeps %.0f%% of samples id=%s (memory pressure level %d; the rest "
            "are counted as samples_dropped_memory_pressure)",
            self.program,
            factor * 100,
            self._id,
            self._host.pressure.level,
        )
        self._factor, self._credit = factor, 0.0

    @property
    def clearing(self) -> bool:
        """The stack maps are being emptied, a step per drain."""
        return (
            self._stacks is not None
            and self._spill is not None
            and (self._stacks.clearing or self._spill.clearing)
        )

    def _count_reader(self) -> None:
        """Add the growth of what the ring and stack readers counted (no syscalls)."""
        st, sp, rb = self._stacks, self._spill, self._ringbuf
        assert st is not None and sp is not None and rb is not None
        now = (st.lost + sp.lost, st.clears, rb.discarded, rb.failed)
        for name, value, prev in zip(_READER_COUNTS, now, self._reader_prev, strict=True):
            self._count(name, value - prev)
        self._reader_prev = now

    def _on_event(self, view: memoryview) -> None:
        time_ns, value, kind, flags, pid, tid, cpu, ustack, kstack, threshold, raw_comm = (
            EVENT.unpack_from(view)
        )
        if flags & F_STACK_COPY and self._copy_flow is not None:
            self._copy_flow.read += len(view)  # whatever becomes of the sample: read
        host = self._host
        assert host is not None
        unwind = self._unwind
        if kind == EVENT_EXEC:
            host.processes.exec(pid, time_ns + self._boot_offset)
            if unwind is not None:
                self._unwind_deferred.discard(pid)
                unwind.process_exec(pid)
            return
        if kind == EVENT_EXIT:
            host.processes.exit(pid)
            if unwind is not None:
                self._unwind_deferred.discard(pid)
                unwind.process_exit(pid)
            return
        comm = self._comm_ok.get(raw_comm, "")
        if comm == "":
            comm = self._decode_comm(raw_comm)
        # A new pid is observed before the comm filter: its first event may carry the comm
        # it had before exec (`nice`, a shell) and BPF announces each pid only once, so a
        # process filtered here would never be snapshotted under its later, matching comm.
        if flags & F_NEW_PID:
            host.processes.observe(pid)
            if unwind is not None:
                if comm is not None:
                    unwind.process_seen(pid)
                elif len(self._unwind_deferred) < MAX_DEFERRED:
                    self._unwind_deferred.add(pid)
                else:
                    self._count("unwind_deferred_full")
        if comm is None:
            self._count("comm_filtered")
            return  # the comm regex runs here: BPF cannot match regular expressions
        if unwind is not None:
            if self._unwind_deferred and pid in self._unwind_deferred:
                self._unwind_deferred.discard(pid)  # its first sample past the filter: load it
                unwind.process_seen(pid)
            else:
                unwind.sampled(pid)  # a process waiting for its tables moves up
        if self._factor < 1.0:  # before the stack look-ups: a dropped sample costs nothing
            self._credit += self._factor
            if self._credit < 1.0:
                self._pressure_dropped += 1
                return
            self._credit -= 1.0
        walked = self.walk_stamp_ns(time_ns, value)
        if flags & F_USER_FRAMES:
            user = self._frames.user(view, ustack)
            if unwind is not None and (ustack >> 8) & 0xFF == NO_MAPPING:
                unwind.mapping_missed(pid)  # code mapped since the process was loaded
        else:
            user = user_stack(self._stacks, self._spill, ustack, flags, walked)  # type: ignore[arg-type]
        if flags & F_KERNEL_FRAMES:
            kernel = self._frames.kernel(view, ustack, bool(flags & F_USER_FRAMES), kstack)
        else:
            kernel = self._kernel_stack(kstack, flags, walked)
        sample = RawSample(
            pid,
            tid,
            cpu,
            comm,
            time_ns + self._boot_offset,
            self.value(value, threshold),
            user,
            kernel,
        )
        if flags & F_STACK_COPY and unwind is not None and (ustack >> 8) & 0xFF == NO_PROCESS:
            copy = _stack_copy(view)
            if copy is not None and unwind.hold(sample, copy):
                return  # handed on once its copy is walked (TableUnwinding.take_walked)
        self._pending.append(sample)

    def _decode_comm(self, raw: bytes) -> str | None:
        comm = raw.split(b"\0", 1)[0].decode(errors="replace")
        keep = self._comm_re is None or self._comm_re.search(comm) is not None
        if len(self._comm_ok) > 65536:
            self._comm_ok.clear()
        self._comm_ok[raw] = comm if keep else None
        return comm if keep else None

    def _kernel_stack(self, stack_id: int, flags: int, walked: int) -> tuple[int, ...]:
        if stack_id >= 0:
            reader = self._spill if flags & F_KERNEL_SPILL else self._stacks
            stack = reader.get(stack_id, walked)  # type: ignore[union-attr]
            return _MISSING_KERNEL if stack is None else stack
        if stack_id == NEG_ENOENT:
            return ()  # kernel stacks disabled
        if stack_id == NEG_EFAULT and not (self.kernel_efault_is_missing or flags & F_KERNEL_MODE):
            return ()  # the sample interrupted user code: it has no kernel stack
        return _MISSING_KERNEL


def _stack_copy(view: memoryview) -> StackCopy | None:
    """The user stack copy a record carries at COPY_OFFSET (bpf/unwind.h struct unwind_copy)."""
    if len(view) < COPY_OFFSET + COPY.size:
        return None
    ip, sp, bp, size, _pad = COPY.unpack_from(view, COPY_OFFSET)
    first = COPY_OFFSET + COPY.size
    size = min(size, len(view) - first)
    return StackCopy(ip, sp, bp, bytes(view[first : first + size])) if size >= 8 else None
