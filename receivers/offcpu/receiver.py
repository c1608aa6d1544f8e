"""The offcpu receiver: how long threads wait off-CPU, and where, from sched_switch.

The BPF side (bpf/offcpu.bpf.c) records stacks at switch-out and emits one event per finished
wait, with the blocked nanoseconds as its value. Everything else (reader thread, drains,
counters, batches) is the shared collector.bpf.stack_receiver. BPF also wakes the reader every
so many events so the buffer cannot overflow between drains.
"""

from __future__ import annotations

import os

from collector.bpf.attach import AttachSpec
from collector.bpf.events import UNSAMPLED
from collector.bpf.stack_receiver import StackReceiver
from collector.bpf.stacks import STAMP_AFTER_WALK
from collector.component import CreateSettings
from collector.model import ProfileType
from receivers.offcpu.config import OffCpuConfig

STATE_BITS = {"interruptible": 1, "uninterruptible": 2}
# Frames of the raw tracepoint's own call path above __schedule (the BPF program and
# bpf_trace_run4 on Linux 6.x); the classic tracepoint starts at __schedule already.
_RAW_TP_KERNEL_SKIP = 2
_TWO_32 = float(1 << 32)


def profile_type(config: OffCpuConfig) -> ProfileType:
    """pprof ``off_cpu/nanoseconds``; the notes say what the values cover."""
    notes = [
        f"states={'+'.join(config.states)}",
        f"min_block={config.min_block:g}s"
        + (f" max_block={config.max_block:g}s" if config.max_block is not None else ""),
    ]
    if config.sample_ratio < 1 or config.max_rate:
        limit = f"max_rate={config.max_rate}/s per CPU" if config.max_rate else "max_rate=none"
        notes.append(
            "values are scaled by the inverse of each wait's sampling probability "
            f"(sample_ratio={config.sample_ratio:g}, {limit})"
        )
    return ProfileType(
        name="off_cpu", sample_type="off_cpu", sample_unit="nanoseconds", notes=tuple(notes)
    )


def bpf_defines(config: OffCpuConfig, ncpus: int) -> dict[str, int]:
    """The -D defines that carry the settings to bpf/offcpu.bpf.c."""
    ratio = config.sample_ratio
    return {
        **config.common_defines(ncpus),
        "STATE_MASK": sum(STATE_BITS[s] for s in set(config.states)),
        "MIN_BLOCK_NS": int(config.min_block * 1e9),
        "MAX_BLOCK_NS": int(config.max_block * 1e9)
        if config.max_block is not None
        else (1 << 63) - 1,
        "SAMPLE_THRESHOLD": 0 if ratio >= 1 else max(1, int(ratio * (1 << 32))),
        "MAX_RATE": config.max_rate,
        "KERNEL_SKIP": _RAW_TP_KERNEL_SKIP if config.hook == "raw_tracepoint" else 0,
    }


class OffCpuReceiver(StackReceiver):
    program = "offcpu"
    program_counters = (
        "storage_full",
        "above_max_block",
        "rate_limited",
        "below_min_block",
        "no_switch_in",
    )
    kernel_efault_is_missing = True  # a wait always has a kernel stack (__schedule)
    walk_window = STAMP_AFTER_WALK  # the switch-out is stamped after the walks

    def __init__(self, settings: CreateSettings, config: OffCpuConfig) -> None:
        super().__init__(settings, config, profile_type(config))
        self._off_config = config

    def defines(self) -> dict[str, int]:
        return bpf_defines(self._off_config, os.cpu_count() or 1)

    def attachments(self) -> list[AttachSpec]:
        if self._off_config.hook == "raw_tracepoint":
            switch = AttachSpec("raw_tracepoint", "on_switch_raw", "sched_switch")
        else:
            switch = AttachSpec("tracepoint", "on_switch_tp", "sched:sched_switch")
        return [
            switch,
            AttachSpec("tracepoint", "on_exit", "sched:sched_process_exit"),
            AttachSpec("tracepoint", "on_exec", "sched:sched_process_exec"),
        ]

    def value(self, raw: int, threshold: int) -> int:
        # Horvitz-Thompson: the wait was recorded with probability threshold / 2**32, so
        # dividing by it keeps totals unbiased however the probability varied per wait.
        if threshold >= UNSAMPLED or threshold == 0:
            return raw
        return round(raw * _TWO_32 / threshold)

    def walk_stamp_ns(self, time_ns: int, raw: int) -> int:
        # The event is stamped when the wait ended; its stacks were walked as it began.
        return time_ns - raw

    def describe(self) -> str:
        c = self._off_config
        return (
            f"hook={c.hook} states={','.join(c.states)} min_block={c.min_block:g}s "
            f"sample_ratio={c.sample_ratio:g} max_rate={c.max_rate}"
        )
