"""The record layout and counters of bpf/go_runtime.bpf.c (bpf/go_runtime.h)."""

from __future__ import annotations

import struct

from collector.bpf.events import COMMON_COUNTERS

# struct go_event: time_ns, value, goid, kind, flags, pid, tid, cpu, nframes,
# weight_threshold, aux, comm; then nframes u64 user addresses, leaf first.
GO_EVENT = struct.Struct("<QQQIIIIIIII16s")
HEADER = GO_EVENT.size  # GO_EVENT_HEADER
MAX_FRAMES = 64  # GO_MAX_FRAMES
EV_CREATE = 1
EV_SCHED = 3
EV_GC = 4
EV_ALLOC = 5
EV_CHAN = 6
EV_ALLOC_SAMPLED = 7  # by the runtime's heap profiler (profilealloc); aux = MemProfileRate
EV_PROC_EXIT = 8
EV_PROC_EXEC = 9
# struct go_proc: goid_offset, sched_pc_offset, sched_bp_offset, pad, chan_lo[4], chan_hi[4],
# mem_profile_rate (the address of runtime.MemProfileRate), create_lo, create_hi (the range of
# runtime.newproc.func1), newproc_pc (newproc's entry probe site), newproc_lo, newproc_hi
GO_PROC = struct.Struct("<IIII4Q4Q6Q")
CHAN_RANGES = 4
# struct go_gkey is the map key of gstate (not read by user space).

PROGRAM_COUNTERS: tuple[str, ...] = (
    "go_not_ready",  # a hit of a process whose entry was already removed (exiting)
    "go_state_missing",  # readied, never seen parking (parked before the receiver attached)
    "go_goid_unreadable",
    "go_stw_unpaired",  # a GC pause whose gcStart was not seen (started before attach)
    "go_allocs_seen",  # alloc probe hits: every allocation (mallocgc) or the runtime's samples
    "go_sched_untracked",  # ran without runqput/goschedImpl: GC worker, network poller
    "go_rate_limited",  # scheduling/channel records left out by the adaptive sampling
)
COUNTERS = COMMON_COUNTERS + PROGRAM_COUNTERS
assert len(GO_EVENT.pack(*([0] * 11), b"")) == 72
