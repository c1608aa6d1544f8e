"""The go_runtime receiver: goroutines, scheduling latency, GC pauses, allocations and channel
blocking of unmodified Go programs, from uprobes (bpf/go_runtime.bpf.c).

The program is loaded once with its uprobe functions unattached; each target process gets
its own uprobes (receivers/go_runtime/targets.py). A reader thread drains the ring buffer and
hands on one RawBatch per profile type every ``drain_interval``, plus a goroutines_live
snapshot every ``live_interval``. Shutdown detaches first, then drains, so nothing the kernel
produced is lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import time
from typing import TYPE_CHECKING

from collector.bpf.attach import AttachSpec
from collector.bpf.loader import LoadedProgram, load
from collector.bpf.ringbuf import HEADER_SIZE, RingBuffer
from collector.bpf.syscall import name_thread
from collector.component import CreateSettings
from collector.model import ProfileType, RawBatch, RawSample
from receivers.go_runtime import profiles as pt
from receivers.go_runtime.config import GoRuntimeConfig
from receivers.go_runtime.events import (
    COUNTERS,
    EV_CREATE,
    EV_EXIT,
    EV_PROC_EXEC,
    EV_PROC_EXIT,
    GO_EVENT,
    HEADER,
)
from receivers.go_runtime.targets import Targets, bpf_functions

if TYPE_CHECKING:
    from collector.host import Host

_U32 = struct.Struct("<I")
MAX_FAILED_DRAINS = 5
TYPICAL_RECORD = HEADER + HEADER_SIZE + 8 * 24  # for how often BPF wakes the reader


class GoRuntimeReceiver:
    def __init__(self, settings: CreateSettings, config: GoRuntimeConfig) -> None:
        self._id = settings.id
        self._log = settings.logger or logging.getLogger(__name__)
        self._consumer = settings.consumer
        self._config = config
        self._signals = list(dict.fromkeys(config.signals))
        self._alloc_type = pt.alloc_type(config.alloc_sample_bytes)
        self._host: Host | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._prog: LoadedProgram | None = None
        self._ringbuf: RingBuffer | None = None
        self._targets: Targets | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pending: dict[ProfileType, list[RawSample]] = {}
        self._batch_counters: dict[str, int] = {}
        self._counter_prev = [0] * len(COUNTERS)
        self._stacks = pt.Stacks()
        self._comms: dict[bytes, str] = {}
        self._live = pt.LiveGoroutines(config.max_live)
        self._boot_offset = 0
        self._binary_key: tuple[int, int] | None = None
        self._closed = False
        self._failure: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def defines(self) -> dict[str, int]:
        ncpus = max(1, os.cpu_count() or 1)
        events = self._config.ringbuf_pages * 4096 // TYPICAL_RECORD
        rate = self._config.max_rate
        return {
            "RINGBUF_PAGES": self._config.ringbuf_pages,
            "GSTATE_SIZE": self._config.goroutine_slots,
            "ALLOC_RATE": self._config.alloc_sample_bytes,
            "WATCH_EXEC": int(self._config.binary is not None),
            "WAKE_EVERY": max(1, events // (4 * ncpus)),
            # per 100 ms slot; 0 (no limit) as a bound no slot reaches
            "MAX_PER_SLOT": max(1, rate // 10) if rate else 1 << 31,
        }

    def attachments(self) -> list[AttachSpec]:
        programs = [AttachSpec("program", fn, fn) for fn in bpf_functions(self._signals)]
        return [
            *programs,
            AttachSpec("tracepoint", "on_exit", "sched:sched_process_exit"),
            AttachSpec("tracepoint", "on_exec", "sched:sched_process_exec"),
        ]

    async def start(self, host: Host) -> None:
        self._host = host
        self._loop = asyncio.get_running_loop()
        self._prog = await asyncio.to_thread(load, "go_runtime", self.defines(), self.attachments())
        try:
            programs = self._prog.attachments
            prog_fds = {a["target"]: a["fd"] for a in programs if a["kind"] == "program"}
            go_procs = self._prog.map("go_procs")
            self._targets = Targets(
                self._signals, prog_fds, go_procs, self._log, self._count, self._id
            )
            self._ringbuf = RingBuffer(self._prog.map("events"))
            await asyncio.to_thread(self._add_initial)
        except BaseException:
            self._close_all()
            raise
        self._thread = threading.Thread(target=self._run, name=f"{self._id}-reader", daemon=True)
        self._thread.start()
        self._log.info(
            "go_runtime receiver started id=%s signals=%s targets=%d load_seconds=%.2f",
            self._id,
            ",".join(self._signals),
            len(self._targets.traced),
            self._prog.load_seconds,
        )

    def _add_initial(self) -> None:
        assert self._targets is not None
        for pid in self._config.pids:
            self._add(pid)
        if self._config.binary is not None:
            try:
                st = os.stat(self._config.binary)
            except OSError as exc:
                self._log.warning(
                    "go_runtime: binary %s id=%s: %s (processes started later are still "
                    "matched by path)", self._config.binary, self._id, exc.strerror,
                )  # fmt: skip
                return
            self._binary_key = (st.st_dev, st.st_ino)
            for name in os.listdir("/proc"):
                if name.isdigit() and self._runs_binary(int(name)):
                    self._add(int(name))

    def _runs_binary(self, pid: int) -> bool:
        try:
            st = os.stat(f"/proc/{pid}/exe")
            if self._binary_key is not None:
                return (st.st_dev, st.st_ino) == self._binary_key
            return os.readlink(f"/proc/{pid}/exe") == self._config.binary
        except OSError:
            return False

    def _add(self, pid: int) -> None:
        assert self._targets is not None and self._host is not None
        if self._targets.add(pid):
            self._host.processes.observe(pid)

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._stop.set()
            if self._ringbuf is not None:
                self._ringbuf.wake()
            await asyncio.to_thread(self._thread.join)
            await asyncio.sleep(0)
        self._release(self._failure is None, self._hand_on)
        self._log.info("go_runtime receiver stopped id=%s", self._id)

    def _hand_on(self, batches: list[RawBatch]) -> None:
        if self._consumer is not None:
            for b in batches:
                self._consumer.consume(b)

    def _release(self, final_drain: bool, hand_on) -> None:  # type: ignore[no-untyped-def]
        """Detach every probe, hand on what was read (a last live snapshot), close fds."""
        if self._targets is not None:
            self._targets.close()
        if self._prog is not None:
            self._prog.detach()
        if self._ringbuf is not None and not self._ringbuf.closed:
            if final_drain:
                self._drain()
                self._snapshot_live()
            hand_on(self._take_batches())
        self._close_all()

    def _close_all(self) -> None:
        if self._targets is not None:
            self._targets.close()
        if self._ringbuf is not None and not self._ringbuf.closed:
            self._ringbuf.close()
        if self._prog is not None:
            self._prog.close()

    # -- reader thread ---------------------------------------------------------------------

    def _run(self) -> None:
        name_thread(f"{self._id}-reader")
        try:
            self._read_until_stopped()
        except BaseException as exc:  # never silently
            self._failure = exc
            self._count("receiver_failed")
            self._log.error(
                "go_runtime receiver failed id=%s optional=%s: %s: %s",
                self._id, self._config.optional, type(exc).__name__, exc, exc_info=exc,
            )  # fmt: skip
            self._emit(self._take_batches())
            if self._config.optional:
                self._release(False, self._emit)
            elif self._host is not None:
                self._host.report_fatal(self._id, f"reader failed: {exc}")

    def _read_until_stopped(self) -> None:
        assert self._ringbuf is not None
        interval = self._config.drain_interval
        next_emit = time.monotonic() + interval
        next_live = time.monotonic() + self._config.live_interval
        failures = 0
        while not self._stop.is_set():
            self._ringbuf.poll(max(0.0, next_emit - time.monotonic()))
            if self._stop.is_set():
                return
            try:
                self._drain()
                now = time.monotonic()
                if now >= next_live:
                    next_live = now + self._config.live_interval
                    self._snapshot_live()
                if now >= next_emit:
                    next_emit = now + interval
                    self._emit(self._take_batches())
                failures = 0
            except Exception:
                failures += 1
                self._count("reader_errors")
                if failures >= MAX_FAILED_DRAINS:
                    raise
                self._stop.wait(0.1 * 2 ** (failures - 1))

    def _emit(self, batches: list[RawBatch]) -> None:
        if not batches or self._consumer is None or self._loop is None:
            return
        for b in batches:
            try:
                self._loop.call_soon_threadsafe(self._consumer.consume, b)
            except RuntimeError:  # loop closed during shutdown
                self._count("batches_lost_at_shutdown")

    def _take_batches(self) -> list[RawBatch]:
        # A live-goroutines batch is one snapshot: it ends its window (never summed with the next).
        out = [
            RawBatch(t, s, self._id, window_end=t is pt.GOROUTINES_LIVE)
            for t, s in self._pending.items()
            if s
        ]
        self._pending = {}
        if self._batch_counters:
            if not out:
                out.append(RawBatch(pt.GOROUTINES, [], self._id))
            out[0].counters = self._batch_counters
            self._batch_counters = {}
        return out

    def _count(self, name: str, n: int = 1) -> None:
        if not n:
            return
        self._batch_counters[name] = self._batch_counters.get(name, 0) + n
        if self._host is not None:
            self._host.counters.add(self._id, name, n)

    def _snapshot_live(self) -> None:
        if "goroutines" in self._signals:
            now = time.time_ns()
            self._pending.setdefault(pt.GOROUTINES_LIVE, []).extend(self._live.snapshot(now))

    def _drain(self) -> None:
        assert self._ringbuf is not None and self._prog is not None
        self._boot_offset = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        self._ringbuf.drain(self._on_record)
        counters = self._prog.map("counters")
        for i, name in enumerate(COUNTERS):
            value = counters.percpu_u64_sum(_U32.pack(i))
            self._count(name, value - self._counter_prev[i])
            self._counter_prev[i] = value

    def _on_record(self, view: memoryview) -> None:
        if len(view) < HEADER:
            self._count("records_malformed")
            return
        kind = GO_EVENT.unpack_from(view)[3]
        pid = GO_EVENT.unpack_from(view)[5]
        if kind in (EV_PROC_EXIT, EV_PROC_EXEC):
            self._process_gone(pid, kind)
            return
        if kind == EV_EXIT:
            self._live.end(pid, GO_EVENT.unpack_from(view)[2])
            return
        kind, goid, _n, sample = pt.decode(view, self._stacks, self._comms, self._boot_offset)
        if kind == EV_CREATE:
            if "goroutines" not in self._signals:
                return  # created for sched_latency's sake only
            self._pending.setdefault(pt.GOROUTINES, []).append(sample)
            if not self._live.add(pid, goid, sample.user_stack, sample.comm):
                self._count("live_goroutines_dropped")
            return
        ptype = self._alloc_type if kind == 5 else pt.profile_for(kind)
        if ptype is None or not self._wanted(ptype):
            self._count("records_unknown")
            return
        self._pending.setdefault(ptype, []).append(sample)

    def _wanted(self, ptype: ProfileType) -> bool:
        signal = {"sched_latency": "sched_latency", "gc_pause": "gc", "go_alloc": "alloc"}.get(
            ptype.name, ptype.name
        )
        return signal in self._signals

    def _process_gone(self, pid: int, kind: int) -> None:
        assert self._targets is not None and self._host is not None
        traced = pid in self._targets.traced
        if traced:
            self._targets.remove(pid)
            self._live.drop_process(pid)
        if kind == EV_PROC_EXIT:
            if traced:
                self._host.processes.exit(pid)
            return
        if traced:
            self._host.processes.exec(pid)
        if self._config.binary is not None and self._runs_binary(pid):
            self._add(pid)
