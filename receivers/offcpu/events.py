"""Decoding of the events bpf/offcpu.bpf.c writes (layout in bpf/offcpu.h)."""

from __future__ import annotations

import errno
import struct

# struct offcpu_event in bpf/offcpu.h
EVENT = struct.Struct("<QQIIIIiiII16s")
EVENT_WAIT = 0
EVENT_EXEC = 1
EVENT_EXIT = 2
F_NEW_PID = 1

NEG_EFAULT = -errno.EFAULT
NEG_ENOENT = -errno.ENOENT

STATE_BITS = {"interruptible": 1, "uninterruptible": 2}

# Index in the per-CPU "counters" array -> counter name reported in host.counters.
BPF_COUNTERS: tuple[str, ...] = (
    "user_stack_absent",  # -EFAULT: kernel thread, shown without user frames
    "user_stack_collision",  # -EEXIST: stack map hash collision, shown as missing
    "user_stack_map_full",  # -ENOMEM
    "user_stack_error",
    "kernel_stack_missing",  # -EFAULT
    "kernel_stack_collision",
    "kernel_stack_map_full",
    "kernel_stack_error",
    "ringbuf_full",  # events lost because user space fell behind
    "storage_full",  # a switch-out could not be recorded (task storage allocation failed)
    "above_max_block",  # waits longer than max_block: not reported
    "bpf_events",  # wait events emitted
)
