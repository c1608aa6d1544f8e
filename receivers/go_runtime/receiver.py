"""The go_runtime receiver: goroutines, scheduling latency, GC pauses, allocations and channel
blocking of unmodified Go programs, from uprobes (bpf/go_runtime.bpf.c).

The program is loaded once with its uprobe functions unattached; each target process gets
its own uprobes (receivers/go_runtime/targets.py). The reader thread (collector/bpf/reader.py,
shared with the other BPF receivers) drains the ring buffer and
hands on one RawBatch per profile type every ``drain_interval``, plus a goroutines_live
snapshot every ``live_interval``. Shutdown detaches first, then drains, so nothing the kernel
produced is lost.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time

from collector.bpf.attach import AttachSpec
from collector.bpf.loader import LoadedProgram, load
from collector.bpf.reader import RingReader
from collector.bpf.ringbuf import HEADER_SIZE, RingBuffer
from collector.bpf.targets import BinaryTarget
from collector.component import CreateSettings
from collector.golang.procmem import read_many
from collector.model import ProfileType, RawBatch, RawSample
from receivers.go_runtime import profiles as pt
from receivers.go_runtime.config import GoRuntimeConfig
from receivers.go_runtime.events import (
    COUNTERS,
    EV_ALLOC,
    EV_ALLOC_SAMPLED,
    EV_CREATE,
    EV_PROC_EXEC,
    EV_PROC_EXIT,
    GO_EVENT,
    HEADER,
)
from receivers.go_runtime.targets import Targets, bpf_functions, probes_for

TYPICAL_RECORD = HEADER + HEADER_SIZE + 8 * 24  # for how often BPF wakes the reader


class GoRuntimeReceiver(RingReader):
    program = "go_runtime"

    def __init__(self, settings: CreateSettings, config: GoRuntimeConfig) -> None:
        super().__init__(
            settings,
            optional=config.optional,
            interval=config.drain_interval,
            counters=COUNTERS,
        )
        self._config = config
        self._signals = list(dict.fromkeys(config.signals))
        self._alloc_type = pt.alloc_type(config.alloc_sampling, config.alloc_sample_bytes)
        self._targets: Targets | None = None
        self._pending: dict[ProfileType, list[RawSample]] = {}
        self._stacks = pt.Stacks()
        self._rounding = pt.Rounding()
        self._comms: dict[bytes, str] = {}
        self._live = pt.LiveGoroutines(config.max_live)
        self._goid_offsets: dict[int, int] = {}  # per traced pid, for reading its goroutines
        self._next_live = 0.0
        self._binary = BinaryTarget(config.binary) if config.binary is not None else None

    def defines(self) -> dict[str, int]:
        ncpus = max(1, os.cpu_count() or 1)
        events = self._config.ringbuf_pages * 4096 // TYPICAL_RECORD
        rate = self._config.max_rate
        return {
            "RINGBUF_PAGES": self._config.ringbuf_pages,
            "GSTATE_SIZE": self._config.goroutine_slots,
            "ALLOC_RATE": self._config.alloc_sample_bytes,
            "WATCH_EXEC": int(self._config.binary is not None),
            "WANT_CREATE": int("goroutines" in self._signals),
            "WAKE_EVERY": max(1, events // (4 * ncpus)),
            # per 100 ms slot; 0 (no limit) as a bound no slot reaches
            "MAX_PER_SLOT": max(1, rate // 10) if rate else 1 << 31,
        }

    def attachments(self) -> list[AttachSpec]:
        functions = bpf_functions(self._signals, self._config.alloc_sampling)
        programs = [AttachSpec("program", fn, fn) for fn in functions]
        return [
            *programs,
            AttachSpec("tracepoint", "on_exit", "sched:sched_process_exit"),
            AttachSpec("tracepoint", "on_exec", "sched:sched_process_exec"),
        ]

    # -- lifecycle (the reader's rules: collector/bpf/reader.py) ---------------------------

    def _load(self) -> LoadedProgram:
        return load(self.program, self.defines(), self.attachments())

    async def _setup(self) -> None:
        assert self._prog is not None
        programs = self._prog.attachments
        prog_fds = {a["target"]: a["fd"] for a in programs if a["kind"] == "program"}
        go_procs = self._prog.map("go_procs")
        self._targets = Targets(
            probes_for(self._signals, self._config.alloc_sampling),
            prog_fds, go_procs, self._log, self._count, self._id,
        )  # fmt: skip
        self._ringbuf = RingBuffer(self._prog.map("events"))
        await asyncio.to_thread(self._add_initial)
        self._next_live = time.monotonic() + self._config.live_interval

    def describe(self) -> str:
        assert self._targets is not None
        return f"signals={','.join(self._signals)} targets={len(self._targets.traced)}"

    def _add_initial(self) -> None:
        for pid in self._config.pids:
            self._add(pid)
        if self._binary is None:
            return
        try:
            os.stat(self._binary.path)
        except OSError as exc:
            self._log.warning(
                "go_runtime: binary %s id=%s: %s (processes started later are still "
                "matched by path)", self._binary.path, self._id, exc.strerror,
            )  # fmt: skip
            return
        for pid in self._binary.running():
            self._add(pid)

    def _add(self, pid: int) -> None:
        assert self._targets is not None and self._host is not None
        if self._targets.add(pid):
            self._host.processes.observe(pid)
            # kept past detach: the last live snapshot comes after the probes are gone
            self._goid_offsets[pid] = self._targets.traced[pid].binary.goid_offset

    def _detach(self) -> None:
        if self._targets is not None:
            self._targets.close()
        super()._detach()

    def _last_read(self, final_drain: bool) -> None:
        if final_drain:
            self._drain()
            self._snapshot_live()  # a last live snapshot

    def _close(self) -> None:
        if self._targets is not None:
            self._targets.close()
        super()._close()

    # -- reader thread ---------------------------------------------------------------------

    def _after_drain(self) -> None:
        now = time.monotonic()
        if now >= self._next_live:
            self._next_live = now + self._config.live_interval
            self._snapshot_live()
        elif self._live.size >= self._config.max_live // 2:
            self._prune_live()  # before the table fills up with goroutines that ended
        super()._after_drain()

    def _prune_live(self) -> None:
        for pid in list(self._live.by_pid):
            offset = self._goid_offsets.get(pid)
            if offset is None:
                self._live.drop_process(pid)
            else:
                self._live.prune(pid, offset, functools.partial(read_many, pid))

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
            out[0].counters = self._take_counters()
        return out

    def _snapshot_live(self) -> None:
        if "goroutines" in self._signals:
            self._prune_live()
            now = time.time_ns()
            self._pending.setdefault(pt.GOROUTINES_LIVE, []).extend(self._live.snapshot(now))

    def _drain(self) -> None:
        assert self._ringbuf is not None
        self._set_boot_offset()
        self._ringbuf.drain(self._on_record)
        self._read_counters()

    def _on_record(self, view: memoryview) -> None:
        if len(view) < HEADER:
            self._count("records_malformed")
            return
        kind = GO_EVENT.unpack_from(view)[3]
        pid = GO_EVENT.unpack_from(view)[5]
        if kind in (EV_PROC_EXIT, EV_PROC_EXEC):
            self._process_gone(pid, kind)
            return
        kind, goid, _n, sample = pt.decode(
            view, self._stacks, self._comms, self._boot_offset, self._rounding
        )
        if kind == EV_CREATE:
            if "goroutines" not in self._signals:
                return  # created for sched_latency's sake only
            self._pending.setdefault(pt.GOROUTINES, []).append(sample)
            g = GO_EVENT.unpack_from(view)[1]  # a creation's value is the new g's address
            if not self._live.add(pid, goid, g, sample.user_stack, sample.comm):
                self._count("live_goroutines_dropped")
            return
        ptype = self._alloc_type if kind in (EV_ALLOC, EV_ALLOC_SAMPLED) else pt.profile_for(kind)
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
            self._goid_offsets.pop(pid, None)
        if kind == EV_PROC_EXIT:
            if traced:
                self._host.processes.exit(pid)
            return
        if traced:
            self._host.processes.exec(pid)
        if self._binary is not None and self._binary.runs(pid):
            self._add(pid)
