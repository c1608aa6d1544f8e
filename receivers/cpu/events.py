"""Decoding of the events bpf/cpu.bpf.c writes (layout in bpf/common.h)."""

from __future__ import annotations

import errno
import struct

# struct event in bpf/common.h
EVENT = struct.Struct("<QIIIIIiiI16s")
EVENT_SAMPLE = 0
EVENT_EXEC = 1
EVENT_EXIT = 2
F_NEW_PID = 1
F_KERNEL_MODE = 2

NEG_EFAULT = -errno.EFAULT
NEG_ENOENT = -errno.ENOENT

# Index in the per-CPU "counters" array -> counter name reported in host.counters.
BPF_COUNTERS: tuple[str, ...] = (
    "user_stack_absent",  # -EFAULT: kernel thread or exiting task, shown without user frames
    "user_stack_collision",  # -EEXIST: stack map hash collision, shown as missing
    "user_stack_map_full",  # -ENOMEM
    "user_stack_error",
    "kernel_stack_missing",  # -EFAULT in kernel mode
    "kernel_stack_collision",
    "kernel_stack_map_full",
    "kernel_stack_error",
    "ringbuf_full",  # events lost because user space fell behind
    "bpf_samples",  # every perf sample, before the idle/pid filters
)
