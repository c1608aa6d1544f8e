"""The offcpu receiver: how long threads wait off-CPU, and where, from sched_switch.

The BPF side (bpf/offcpu.bpf.c) records stacks at switch-out and emits one event per finished
wait. A reader thread waits on the ringbuf (epoll, timeout ``drain_interval``); BPF wakes it at
once for the first event of a new process (so its mappings are snapshotted while it lives), for
exec/exit, and every so many events so the buffer cannot overflow between drains. Samples are
handed to the event loop as one RawBatch per ``drain_interval``.
"""

from __future__ import annotations

import asyncio
import logging
import os
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
    ProfileType,
    RawBatch,
    RawSample,
)
from receivers.offcpu.config import OffCpuConfig
from receivers.offcpu.events import (
    BPF_COUNTERS,
    EVENT,
    EVENT_EXEC,
    EVENT_EXIT,
    F_NEW_PID,
    NEG_EFAULT,
    NEG_ENOENT,
    STATE_BITS,
)

if TYPE_CHECKING:
    from collector.host import Host

_U32 = struct.Struct("<I")
_MISSING_USER = (MISSING_USER_STACK,)
_MISSING_KERNEL = (MISSING_KERNEL_STACK,)
# Frames of the raw tracepoint's own call path above __schedule (the BPF program and
# bpf_trace_run4 on Linux 6.x); the classic tracepoint starts at __schedule already.
_RAW_TP_KERNEL_SKIP = 2
_EVENT_BYTES = EVENT.size + 8  # ringbuf record header


def profile_type(config: OffCpuConfig) -> ProfileType:
    """pprof ``off_cpu/nanoseconds``; the notes say what the values cover."""
    notes = [
        f"states={'+'.join(config.states)}",
        f"min_block={config.min_block:g}s"
        + (f" max_block={config.max_block:g}s" if config.max_block is not None else ""),
    ]
    if config.sample_ratio < 1:
        notes.append(
            f"values scaled by 1/sample_ratio={config.sample_ratio:g}: switch-outs are sampled"
        )
    return ProfileType(
        name="off_cpu", sample_type="off_cpu", sample_unit="nanoseconds", notes=tuple(notes)
    )


def bpf_defines(config: OffCpuConfig, ncpus: int) -> dict[str, int]:
    """The -D defines that carry the settings to bpf/offcpu.bpf.c."""
    ratio = config.sample_ratio
    capacity = config.ringbuf_pages * 4096 // _EVENT_BYTES
    return {
        "STATE_MASK": sum(STATE_BITS[s] for s in set(config.states)),
        "MIN_BLOCK_NS": int(config.min_block * 1e9),
        "MAX_BLOCK_NS": int(config.max_block * 1e9) if config.max_block is not None else (1 << 63),
        "SAMPLE_THRESHOLD": 0 if ratio >= 1 else max(1, int(ratio * (1 << 32))),
        "FILTER_PIDS": int(bool(config.pids)),
        "USER_STACKS": int(config.user_stacks),
        "KERNEL_STACKS": int(config.kernel_stacks),
        "KERNEL_SKIP": _RAW_TP_KERNEL_SKIP if config.hook == "raw_tracepoint" else 0,
        "STACK_MAP_SIZE": config.stack_map_size,
        "RINGBUF_PAGES": config.ringbuf_pages,
        # wake the reader when every CPU together may have filled a quarter of the buffer
        "WAKE_EVERY": max(1, capacity // (4 * max(ncpus, 1))),
    }


class OffCpuReceiver:
    def __init__(self, settings: CreateSettings, config: OffCpuConfig) -> None:
        self._id = settings.id
        self._log = settings.logger or logging.getLogger(__name__)
        self._consumer = settings.consumer
        self._config = config
        self._profile_type = profile_type(config)
        self._scale = 1.0 / config.sample_ratio
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
        c = self._config
        self._log.info(
            "offcpu receiver started id=%s hook=%s states=%s min_block=%gs sample_ratio=%g "
            "load_seconds=%.2f",
            self._id,
            c.hook,
            ",".join(c.states),
            c.min_block,
            c.sample_ratio,
            self._prog.load_seconds,
        )

    def _load(self) -> LoadedProgram:
        defines = bpf_defines(self._config, os.cpu_count() or 1)
        if self._config.hook == "raw_tracepoint":
            switch = AttachSpec("raw_tracepoint", "on_switch_raw", "sched_switch")
        else:
            switch = AttachSpec("tracepoint", "on_switch_tp", "sched:sched_switch")
        attach = [
            switch,
            AttachSpec("tracepoint", "on_exit", "sched:sched_process_exit"),
            AttachSpec("tracepoint", "on_exec", "sched:sched_process_exec"),
        ]
        return load("offcpu", defines, attach)

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
            self._prog.close()  # detaches the programs, frees the maps
        self._log.info("offcpu receiver stopped id=%s", self._id)

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
                    self._log.exception("offcpu receiver drain failed id=%s", self._id)
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
        (time_ns, blocked_ns, kind, flags, pid, tid, ustack, kstack, cpu, _pad, raw_comm) = (
            EVENT.unpack(view)
        )
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
                round(blocked_ns * self._scale),
                self._user_stack(ustack),
                self._kernel_stack(kstack),
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

    def _kernel_stack(self, stack_id: int) -> tuple[int, ...]:
        if stack_id >= 0:
            stack = self._stacks.get(stack_id)  # type: ignore[union-attr]
            return _MISSING_KERNEL if stack is None else stack
        if stack_id == NEG_ENOENT:
            return ()  # kernel stacks disabled
        return _MISSING_KERNEL
