"""The heap receiver's BPF program: its defines, attachments and load (bpf/heap.bpf.c)."""

from __future__ import annotations

import logging
import math
import os
import struct
from collections.abc import Callable

from collector.bpf.attach import AttachSpec
from collector.bpf.loader import LoadedProgram, load
from collector.errors import RuntimeFailure
from collector.proc.pidns import pidns_defines
from receivers.heap.config import HeapConfig
from receivers.heap.targets import PROGRAMS

EXP_TABLE_SIZE = 4096


def exp_table(sample_bytes: int, size: int = EXP_TABLE_SIZE) -> list[int]:
    """Quantiles of the exponential distribution of mean ``sample_bytes`` at the midpoints of
    ``size`` equal steps: BPF picks one at random per draw (bias of the mean < 1e-4)."""
    return [max(1, round(-sample_bytes * math.log((i + 0.5) / size))) for i in range(size)]


def comm_words(binary: str) -> tuple[int, int]:
    """The comm a process running ``binary`` has after exec (its file name, 15 bytes at
    most, NUL padded to 16) as the two little-endian u64 words BPF compares."""
    raw = os.fsencode(os.path.basename(binary))[:15].ljust(16, b"\0")
    lo, hi = struct.unpack("<QQ", raw)
    return lo, hi


def _signed(v: int) -> int:
    # defines are names and numbers: a u64 goes as the signed number C reads back the same
    return v - (1 << 64) if v >= 1 << 63 else v


def bpf_defines(c: HeapConfig, ncpus: int | None = None) -> dict[str, int]:
    faults = c.mode == "page_faults"
    lo, hi = comm_words(c.binary) if c.binary else (0, 0)
    ncpus = max(1, ncpus or os.cpu_count() or 1)
    return {
        "RINGBUF_PAGES": c.ringbuf_pages,
        "STACK_MAP_SIZE": c.stack_map_size,
        "SPILL_MAP_SIZE": max(64, c.stack_map_size // 4),
        "FILTER_PIDS": 1,
        "USER_STACKS": int(c.user_stacks),
        "SAMPLE_BYTES": c.sample_bytes,
        "EXP_TABLE_SIZE": EXP_TABLE_SIZE,
        "OUTSTANDING_SIZE": c.outstanding_map_size,
        "PAGE_FAULTS": int(faults),
        "UNWIND_TABLES": int(faults and c.user_stacks and c.unwind != "frame_pointers"),
        "BINARY_COMM": int(c.binary is not None),
        "BINARY_COMM_LO": _signed(lo),
        "BINARY_COMM_HI": _signed(hi),
        "WAKE_EVERY": max(1, c.ringbuf_records() // (4 * ncpus)),
        **pidns_defines(),
    }


def attachments(c: HeapConfig) -> list[AttachSpec]:
    specs = [
        AttachSpec("tracepoint", "on_exec", "sched:sched_process_exec"),
        AttachSpec("tracepoint", "on_exit", "sched:sched_process_exit"),
    ]
    if c.mode == "page_faults":
        return [
            *specs,
            AttachSpec("tracepoint", "on_fault", "exceptions:page_fault_user"),
            AttachSpec("tracepoint", "on_brk", "syscalls:sys_enter_brk"),
            AttachSpec("tracepoint", "on_mmap", "syscalls:sys_enter_mmap"),
        ]
    # Loaded unattached: attached per target process (collector/bpf/uprobe.py).
    return [*specs, *(AttachSpec("program", fn, fn) for fn in PROGRAMS)]


def load_program(
    c: HeapConfig, cid: str, log: logging.Logger, count: Callable[[str, int], None]
) -> LoadedProgram:
    """Load (blocking: clang); with ``unwind: auto`` a kernel that refuses the table walker
    gets the frame-pointer build (logged once, counted as unwind_unavailable)."""
    defines = bpf_defines(c)
    try:
        return load("heap", defines, attachments(c))
    except RuntimeFailure as exc:
        if not defines["UNWIND_TABLES"] or c.unwind != "auto":
            raise
        log.warning(
            "heap receiver: table unwinding unavailable id=%s, using frame pointers: %s", cid, exc
        )
        count("unwind_unavailable", 1)
        return load("heap", {**defines, "UNWIND_TABLES": 0}, attachments(c))
