"""The cpu receiver: samples on-CPU stacks with a perf event BPF program.

A reader thread waits on the ringbuf (epoll, timeout ``drain_interval``); the BPF side wakes
it at once only for the first sample of a new process (so its mappings are snapshotted while
it lives) and for exec/exit. Samples are batched and handed to the event loop once per
``drain_interval``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import threading
import time
from typing import TYPE_CHECKING

from collector.bpf import AttachSpec, LoadedProgram, RingBuffer, StackReader, load
from collector.component import CreateSettings
from collector.model import (
    MISSING_KERNEL_STACK,
    MISSING_USER_STACK,
    RawBatch,
    RawSample,
    cpu_profile_type,
)
from receivers.cpu.config import CpuConfig
from receivers.cpu.events import (
    BPF_COUNTERS,
    EVENT,
    EVENT_EXEC,
    EVENT_EXIT,
    F_KERNEL_MODE,
    F_NEW_PID,
    NEG_EFAULT,
    NEG_ENOENT,
)

if TYPE_CHECKING:
    from collector.host import Host

_U32 = struct.Struct("<I")
_MISSING_USER = (MISSING_USER_STACK,)
_MISSING_KERNEL = (MISSING_KERNEL_STACK,)


class CpuReceiver:
    def __init__(self, settings: CreateSettings, config: CpuConfig) -> None:
        self._id = settings.id
        self._log = settings.logger or logging.getLogger(__name__)
        self._consumer = settings.consumer
        self._config = config
        self._profile_type = cpu_profile_type(config.frequency)
        self._comm_re = re.compile(config.comm) if config.comm else None
        self._comm_ok: dict[bytes, str | None] = {}  # raw comm -> str, or None when filtered
        self._host: Host | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._prog: LoadedProgram | None = None
        self._ringbuf: RingBuffer | None = None
        self._stacks: StackReader | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pending: list[RawSample] = []
        self._counter_prev = [0] * len(BPF_COUNTERS)
        self._batch_counters: dict[str, int] = {}
        self._boot_offset = 0
        self._lost_prev = self._clears_prev = self._discarded_prev = 0
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: Host) -> None:
        self._host = host
        self._loop = asyncio.get_running_loop()
        self._prog = await asyncio.to_thread(self._load)
        try:
            if self._config.pids:
                pid_filter = self._prog.map("pid_filter")
                for pid in self._config.pids:
                    pid_filter.update(_U32.pack(pid), b"\x01")
            self._ringbuf = RingBuffer(self._prog.map("events"))
            self._stacks = StackReader(self._prog.map("stacks"))
        except BaseException:
            self._prog.close()
            raise
        self._thread = threading.Thread(target=self._run, name=f"{self._id}-reader", daemon=True)
        self._thread.start()
        self._log.info(
            "cpu receiver started id=%s frequency=%d event=%s load_seconds=%.2f",
            self._id,
            self._config.frequency,
            self._config.event,
            self._prog.load_seconds,
        )

    def _load(self) -> LoadedProgram:
        c = self._config
        defines = {
            "RINGBUF_PAGES": c.ringbuf_pages,
            "STACK_MAP_SIZE": c.stack_map_size,
            "FILTER_PIDS": int(bool(c.pids)),
            "INCLUDE_IDLE": int(c.include_idle),
            "USER_STACKS": int(c.user_stacks),
            "KERNEL_STACKS": int(c.kernel_stacks),
        }
        attach = [
            AttachSpec("perf_event", "on_sample", c.event, sample_freq=c.frequency),
            AttachSpec("tracepoint", "on_exec", "sched:sched_process_exec"),
            AttachSpec("tracepoint", "on_exit", "sched:sched_process_exit"),
        ]
        return load("cpu", defines, attach)

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._stop.set()
            if self._ringbuf is not None:
                self._ringbuf.wake()
            await asyncio.to_thread(self._thread.join)
            await asyncio.sleep(0)  # let batches the thread scheduled go first
        if self._ringbuf is not None:
            self._drain()
            batch = self._take_batch()
            if batch is not None and self._consumer is not None:
                self._consumer.consume(batch)
            self._ringbuf.close()
        if self._prog is not None:
            self._prog.close()  # detaches the programs
        self._log.info("cpu receiver stopped id=%s", self._id)

    # -- reader thread ---------------------------------------------------------------------

    def _run(self) -> None:
        assert self._ringbuf is not None
        interval = self._config.drain_interval
        next_emit = time.monotonic() + interval
        error_logged = False
        while not self._stop.is_set():
            self._ringbuf.poll(max(0.0, next_emit - time.monotonic()))
            if self._stop.is_set():
                return
            try:
                self._drain()
                if time.monotonic() >= next_emit:
                    next_emit = time.monotonic() + interval
                    self._emit(self._take_batch())
            except Exception:
                self._count("reader_errors")
                if not error_logged:
                    self._log.exception("cpu receiver drain failed id=%s", self._id)
                    error_logged = True
                time.sleep(interval)

    def _emit(self, batch: RawBatch | None) -> None:
        if batch is None or self._consumer is None or self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(self._consumer.consume, batch)
        except RuntimeError:  # loop closed during shutdown
            self._count("batches_lost_at_shutdown")

    def _take_batch(self) -> RawBatch | None:
        if not self._pending and not self._batch_counters:
            return None
        batch = RawBatch(self._profile_type, self._pending, self._id, self._batch_counters)
        self._pending = []
        self._batch_counters = {}
        return batch

    def _count(self, name: str, n: int = 1) -> None:
        if not n:
            return
        self._batch_counters[name] = self._batch_counters.get(name, 0) + n
        if self._host is not None:
            self._host.counters.add(self._id, name, n)

    def _drain(self) -> None:
        """Read every event, then the BPF counters, then maybe empty the stack map."""
        assert self._ringbuf is not None and self._stacks is not None
        self._boot_offset = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        self._ringbuf.drain(self._on_event)
        self._read_counters()
        self._stacks.maybe_clear()
        st, rb = self._stacks, self._ringbuf
        self._count("stack_lost", st.lost - self._lost_prev)
        self._count("stack_map_clears", st.clears - self._clears_prev)
        self._count("ringbuf_discarded", rb.discarded - self._discarded_prev)
        self._lost_prev, self._clears_prev, self._discarded_prev = st.lost, st.clears, rb.discarded

    def _read_counters(self) -> None:
        assert self._prog is not None
        counters = self._prog.map("counters")
        for i, name in enumerate(BPF_COUNTERS):
            value = counters.percpu_u64_sum(_U32.pack(i))
            self._count(name, value - self._counter_prev[i])
            self._counter_prev[i] = value

    def _on_event(self, view: memoryview) -> None:
        time_ns, kind, flags, pid, tid, cpu, ustack, kstack, value, raw_comm = EVENT.unpack(view)
        host = self._host
        assert host is not None
        if kind == EVENT_EXEC:
            host.processes.exec(pid)
            return
        if kind == EVENT_EXIT:
            host.processes.exit(pid)
            return
        comm = self._comm_ok.get(raw_comm, "")
        if comm == "":
            comm = self._decode_comm(raw_comm)
        if comm is None:
            return  # the comm regex runs here: BPF cannot match regular expressions
        if flags & F_NEW_PID:
            host.processes.observe(pid)
        self._pending.append(
            RawSample(
                pid,
                tid,
                cpu,
                comm,
                time_ns + self._boot_offset,
                value,
                self._user_stack(ustack),
                self._kernel_stack(kstack, flags),
            )
        )

    def _decode_comm(self, raw: bytes) -> str | None:
        comm = raw.split(b"\0", 1)[0].decode(errors="replace")
        keep = self._comm_re is None or self._comm_re.search(comm) is not None
        if len(self._comm_ok) > 65536:
            self._comm_ok.clear()
        self._comm_ok[raw] = comm if keep else None
        return comm if keep else None

    def _user_stack(self, stack_id: int) -> tuple[int, ...]:
        if stack_id >= 0:
            stack = self._stacks.get(stack_id)  # type: ignore[union-attr]
            return _MISSING_USER if stack is None else stack
        if stack_id in (NEG_EFAULT, NEG_ENOENT):  # kernel thread, or user stacks disabled
            return ()
        return _MISSING_USER

    def _kernel_stack(self, stack_id: int, flags: int) -> tuple[int, ...]:
        if stack_id >= 0:
            stack = self._stacks.get(stack_id)  # type: ignore[union-attr]
            return _MISSING_KERNEL if stack is None else stack
        if stack_id == NEG_ENOENT or (stack_id == NEG_EFAULT and not flags & F_KERNEL_MODE):
            return ()  # disabled, or the sample interrupted user code
        return _MISSING_KERNEL
