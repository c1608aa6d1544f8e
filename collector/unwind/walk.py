"""The walk of bpf/unwind.h, in user space, over a copy of the stack (``unwind_stack_copy``).

A sample taken before its process's mappings were loaded into the walker's maps carries the
registers and the top of its user stack instead of a walked stack (bpf/cpu.bpf.c). Once the
worker has the process's entries (loaded, or built from its snapshot if it has exited), this
walks the copy with the same rows, rule for rule as the BPF walker does: the same end reasons,
the same frame-pointer step where a mapping has no table. A read outside the copy is the
walker's ``read_fault`` (the copy stops ``unwind_stack_copy`` bytes above rsp, or at the end of
the stack's mapping).
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from collector.unwind import layout as L

_U64 = struct.Struct("<Q")
_FRAME = struct.Struct("<QQ")  # a frame-pointer frame: saved rbp, return address
_MASK64 = (1 << 64) - 1


class StackCopy(NamedTuple):
    """The sample's user registers and ``data``: the stack's bytes from ``sp`` up."""

    ip: int
    sp: int
    bp: int
    data: bytes


class Mapping(Protocol):
    """What the walk reads of an executable mapping (collector.unwind.maps.Entry)."""

    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def bias(self) -> int: ...
    @property
    def row_first(self) -> int: ...
    @property
    def row_count(self) -> int: ...


def walk(
    copy: StackCopy, entries: Sequence[Mapping], rows: memoryview, max_frames: int = L.MAX_FRAMES
) -> tuple[list[int], int]:
    """(frames leaf first, end reason) of the copy, with ``entries`` sorted by start."""
    data, base = copy.data, copy.sp
    top = base + len(data)

    def read(addr: int) -> int | None:
        return _U64.unpack_from(data, addr - base)[0] if base <= addr <= top - 8 else None

    starts = [e.start for e in entries]
    # Each table's row pcs as a strided view of the u32s: bisect searches it in C (a Python
    # binary search over struct.unpack_from took most of a walk's time).
    words = rows.cast("I")
    pcs: dict[int, memoryview] = {}
    ip, sp, bp = copy.ip, copy.sp, copy.bp
    bp_known = True
    frames: list[int] = []
    for i in range(max_frames):
        frames.append(ip)
        pc = ip if i == 0 else ip - 1  # a return address may point past its function's end
        k = bisect_right(starts, pc) - 1
        if k < 0 or pc >= entries[k].end:
            return frames, L.NO_MAPPING
        m = entries[k]
        if m.row_count == 0:  # no table: one frame-pointer step
            step = _fp_step(data, base, sp, bp)
            if step is None:
                return frames, L.FP_END
            sp, bp, ip = step
            continue
        table = pcs.get(k)
        if table is None:
            first = 2 * m.row_first
            table = pcs[k] = words[first : first + 2 * m.row_count : 2]
        idx = bisect_right(table, (pc - m.bias) & 0xFFFFFFFF) - 1
        if idx < 0:
            return frames, L.NO_ROW
        off = (m.row_first + idx) * 8
        _pc, cfa_off, rbp_off, kind = L.ROW.unpack_from(rows, off)
        rule = kind & 3
        if rule == L.CFA_STOP:
            return frames, kind >> 4
        if rule == L.CFA_RSP:
            cfa = sp + cfa_off * 8
        elif not bp_known:
            return frames, L.BAD_CFA
        else:
            cfa = (bp + cfa_off * 8) & _MASK64
        if cfa <= sp:
            return frames, L.BAD_CFA
        ra = read(cfa - 8)
        if ra is None:
            return frames, L.READ_FAULT
        rbp_rule = (kind >> 2) & 3
        if rbp_rule == L.RBP_SAVED:
            got = read(cfa - rbp_off * 8)
            if got is None:
                return frames, L.READ_FAULT
            bp, bp_known = got, True
        elif rbp_rule == L.RBP_UNKNOWN:
            bp_known = False
        sp, ip = cfa, ra
        if ra == 0:
            return frames, L.END
    return frames, L.DEPTH


def walk_frame_pointers(copy: StackCopy, max_frames: int = L.MAX_FRAMES) -> tuple[list[int], int]:
    """(frames leaf first, end reason) as the BPF walker has them for a process it has no
    entry for: frame-pointer steps until the chain ends (``no_process``), here over the copy.
    For a copy that cannot be walked with tables (held too long, past the held bound, or its
    process unknown): the sample is then no worse than it would have been without a copy,
    but for frames above the copy's end."""
    data, base = copy.data, copy.sp
    ip, sp, bp = copy.ip, copy.sp, copy.bp
    frames: list[int] = []
    for _ in range(max_frames):
        frames.append(ip)
        step = _fp_step(data, base, sp, bp)
        if step is None:
            return frames, L.NO_PROCESS
        sp, bp, ip = step
    return frames, L.DEPTH


def _fp_step(data: bytes, base: int, sp: int, bp: int) -> tuple[int, int, int] | None:
    """bpf/unwind.h unwind_fp_step over a copy: (sp, bp, ip) of the caller, or None where the
    chain ends (rbp 0, below rsp, misaligned, or its frame outside the copy)."""
    if bp == 0 or bp < sp or bp & 7 or not base <= bp <= base + len(data) - _FRAME.size:
        return None
    saved, ra = _FRAME.unpack_from(data, bp - base)
    return bp + 16, saved, ra
