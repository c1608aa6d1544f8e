"""The event layout and counters every stack-sampling BPF program shares (bpf/common.h)."""

from __future__ import annotations

import errno
import struct

# struct event in bpf/common.h: time_ns, value, kind, flags, pid, tid, cpu, user_stack_id,
# kernel_stack_id, weight_threshold, comm. weight_threshold: the event was recorded with
# probability weight_threshold / 2**32; UNSAMPLED means always (value taken as is).
EVENT = struct.Struct("<QQIIIIIiiI16s")
EVENT_SAMPLE = 0
EVENT_EXEC = 1
EVENT_EXIT = 2
F_NEW_PID = 1
# known_pids values (bpf/common.h): KNOWN_EXECED = known to user space, image not yet announced
KNOWN_EXECED = b"\x02"
F_KERNEL_MODE = 2
F_USER_SPILL = 4  # the user stack id is an id of the "stacks_spill" map (after a collision)
F_KERNEL_SPILL = 8
# The user stack follows the event (unwound from tables): user_stack_id is nframes (bits 0-7)
# and the walk's end reason (bits 8-15, collector/unwind/layout.py); a frame is a u64.
F_USER_FRAMES = 16
# The kernel stack follows the user frames: kernel_stack_id is its number of frames.
F_KERNEL_FRAMES = 32
FRAME_SLOTS = 128  # EVENT_FRAME_SLOTS: at most 127 frames per record
F_STACK_COPY = 64  # a user stack copy (COPY header, then its bytes) at COPY_OFFSET
COPY_OFFSET = EVENT.size + 2 * FRAME_SLOTS * 8  # EVENT_COPY_OFFSET
COPY = struct.Struct("<QQQII")  # struct unwind_copy: ip, sp, bp, len, pad; then len bytes
UNSAMPLED = 0xFFFFFFFF

NEG_EFAULT = -errno.EFAULT
NEG_ENOENT = -errno.ENOENT

# Index in the per-CPU "counters" array -> name in host.counters; a program's own counters
# follow these (C_COMMON in bpf/common.h).
COMMON_COUNTERS: tuple[str, ...] = (
    "user_stack_absent",  # -EFAULT: kernel thread or exiting task, shown without user frames
    "user_stack_collision",  # -EEXIST: stack map hash collision, shown as missing
    "user_stack_map_full",  # -ENOMEM
    "user_stack_error",
    "kernel_stack_missing",  # -EFAULT where a kernel stack was expected
    "kernel_stack_collision",
    "kernel_stack_map_full",
    "kernel_stack_error",
    "ringbuf_full",  # events lost because user space fell behind
    "bpf_events",  # events handed to user space, after every filter
    "pidns_outside",  # tasks the collector's PID namespace cannot see: skipped (bpf/pidns.h)
    "self_skipped",  # events of the collector's own process, not recorded (profile_self)
)
