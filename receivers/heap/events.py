"""The records of bpf/heap.bpf.c (layout in bpf/heap.h): common.h's event, then an address."""

from __future__ import annotations

import struct

HEAP_EVENT = struct.Struct("<QQIIIIIiiI16sQ")
HEAP_ADDR = struct.Struct("<Q")  # after the 64-byte event (not in records with frames)
HEAP_ALLOC = 3
HEAP_FREE = 4
HEAP_FAULT = 5
HEAP_GROW = 6
F_UNTRACKED = 64
F_CANDIDATE = 128
F_BRK = 256  # a HEAP_GROW record's value is the break asked of brk()
# The program's counters after the common ones (bpf/heap.bpf.c, C_COMMON + i).
PROGRAM_COUNTERS = (
    "sampled_allocations",
    "outstanding_map_full",
    "sampled_frees",
    "sampled_alloc_failed",
    "task_storage_full",
)
