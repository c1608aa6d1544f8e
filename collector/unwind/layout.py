"""The layout shared with bpf/unwind.h and bpf/unwind_selftest.bpf.c (keep them in step)."""

from __future__ import annotations

import struct

from collector.model.raw import UNWIND_REASONS

# struct unwind_row: pc (vaddr - table base), cfa_off (x8), rbp_off (x8), kind.
ROW = struct.Struct("<IHBB")
# struct unwind_mapping: start, end, bias, row_first, row_count.
MAPPING = struct.Struct("<QQQII")
# struct unwind_proc: slot, count.
PROC = struct.Struct("<IIII")  # slot, count, missed (set by BPF), pad

MAX_MAPPINGS = 64  # UNWIND_MAX_MAPPINGS
MAX_TABLE_ROWS = 1 << 22  # the BPF search strides reach 2^22 - 1 rows of one table
MAX_FRAMES = 127  # UNWIND_MAX_FRAMES default

# unwind_row.kind, bits 0-1: how the CFA is found.
CFA_STOP = 0
CFA_RSP = 1
CFA_RBP = 2
# bits 2-3: where the caller's rbp is.
RBP_SAME = 0
RBP_SAVED = 1
RBP_UNKNOWN = 2

# enum unwind_reason: why a walk ended; also the index in unwind_stats and, for CFA_STOP
# rows, bits 4-7 of kind.
END = 0
NO_PROCESS = 1
NO_MAPPING = 2
NO_ROW = 3
TABLE_STOP = 4
PLT = 5
SIGNAL = 6
BAD_CFA = 7
READ_FAULT = 8
DEPTH = 9
FP_END = 10
NO_REGS = 11
REASONS = UNWIND_REASONS  # one list for the walker's codes, shared with the raw model


def kind(cfa: int, rbp: int = RBP_SAME, reason: int = 0) -> int:
    return cfa | (rbp << 2) | (reason << 4)


def stop_row(pc: int, reason: int) -> bytes:
    return ROW.pack(pc, 0, 0, kind(CFA_STOP, reason=reason))


# bpf/unwind_selftest.bpf.c struct unwind_sample: pid, tid, mode, reason, nframes, flags.
SAMPLE_HEADER = struct.Struct("<IIBBHI")
MODE_TABLES = 0
MODE_FP = 1
MODE_SWITCH = 2
SAMPLE_F_KERNEL = 1
