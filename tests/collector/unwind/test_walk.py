"""collector.unwind.walk, the user-space twin of bpf/unwind.h's walker, on hand-made rows and
stacks whose frames are known: every end reason it shares with the BPF walker."""

from __future__ import annotations

import struct

from collector.unwind import layout as L
from collector.unwind.maps import Entry
from collector.unwind.walk import StackCopy, walk

TEXT = 0x400000  # where the table's binary is mapped (bias: pc = address - TEXT)
SP = 0x7FFF0000


def _rows(*rows: tuple[int, int, int, int]) -> memoryview:
    return memoryview(b"".join(L.ROW.pack(*r) for r in rows))


def _stack(*words: int) -> bytes:
    return struct.pack(f"<{len(words)}Q", *words)


# Three functions: leaf at 0x100 (CFA = rsp + 16: one push), mid at 0x200 (CFA = rsp + 8, rbp
# saved nowhere), outer at 0x300 (the outermost: a stop row whose reason is END).
ROWS = _rows(
    (0x100, 2, 0, L.kind(L.CFA_RSP)),
    (0x200, 1, 0, L.kind(L.CFA_RSP)),
    (0x300, 0, 0, L.kind(L.CFA_STOP, reason=L.END)),
    (0x400, 0, 0, L.kind(L.CFA_STOP, reason=L.NO_ROW)),
)
ENTRY = Entry(TEXT, TEXT + 0x1000, TEXT, 0, 4, "/bin/x", "k")


def test_a_whole_stack_ends_at_the_outermost_frame() -> None:
    # leaf: [sp] = pushed value, [sp+8] = return into mid; mid: [sp+16] = return into outer
    copy = StackCopy(TEXT + 0x110, SP, 0, _stack(0xAAAA, TEXT + 0x210, TEXT + 0x310))
    frames, reason = walk(copy, [ENTRY], ROWS)
    assert frames == [TEXT + 0x110, TEXT + 0x210, TEXT + 0x310]
    assert reason == L.END


def test_a_return_address_outside_the_copy_is_a_read_fault() -> None:
    copy = StackCopy(TEXT + 0x110, SP, 0, _stack(0xAAAA, TEXT + 0x210))  # mid's RA cut off
    frames, reason = walk(copy, [ENTRY], ROWS)
    assert frames == [TEXT + 0x110, TEXT + 0x210]
    assert reason == L.READ_FAULT


def test_an_address_outside_every_mapping_ends_no_mapping() -> None:
    copy = StackCopy(TEXT + 0x110, SP, 0, _stack(0xAAAA, 0x900000))
    frames, reason = walk(copy, [ENTRY], ROWS)
    assert frames == [TEXT + 0x110, 0x900000] and reason == L.NO_MAPPING


def test_return_addresses_are_looked_up_one_byte_back() -> None:
    # mid's RA points at 0x300 exactly, the first byte after mid: its row is mid's, not outer's
    copy = StackCopy(TEXT + 0x110, SP, 0, _stack(0xAAAA, TEXT + 0x300, TEXT + 0x310))
    frames, reason = walk(copy, [ENTRY], ROWS)
    assert frames == [TEXT + 0x110, TEXT + 0x300, TEXT + 0x310] and reason == L.END


def test_rbp_based_frames_and_saved_rbp() -> None:
    # 0x500: CFA = rbp + 16, caller's rbp saved at CFA - 16 (push rbp; mov rbp, rsp)
    rows = _rows(
        (0x100, 2, 0, L.kind(L.CFA_RSP)),
        (0x500, 2, 2, L.kind(L.CFA_RBP, L.RBP_SAVED)),
        (0x600, 0, 0, L.kind(L.CFA_STOP, reason=L.END)),
    )
    entry = Entry(TEXT, TEXT + 0x1000, TEXT, 0, 3, "/bin/x", "k")
    bp = SP + 32  # the frame: [bp] = caller's rbp, [bp + 8] = RA into the stop row's function
    data = _stack(0, 0, 0, 0, 0x1234, TEXT + 0x610)
    frames, reason = walk(StackCopy(TEXT + 0x510, SP, bp, data), [entry], rows)
    assert frames == [TEXT + 0x510, TEXT + 0x610] and reason == L.END


def test_rbp_unknown_then_rbp_based_is_bad_cfa() -> None:
    rows = _rows(
        (0x100, 2, 0, L.kind(L.CFA_RSP, L.RBP_UNKNOWN)),
        (0x500, 2, 2, L.kind(L.CFA_RBP, L.RBP_SAVED)),
    )
    entry = Entry(TEXT, TEXT + 0x1000, TEXT, 0, 2, "/bin/x", "k")
    copy = StackCopy(TEXT + 0x110, SP, SP + 64, _stack(0xAAAA, TEXT + 0x510))
    frames, reason = walk(copy, [entry], rows)
    assert frames == [TEXT + 0x110, TEXT + 0x510] and reason == L.BAD_CFA


def test_a_mapping_without_a_table_takes_a_frame_pointer_step() -> None:
    jit = Entry(0x10000000, 0x10001000, 0, 0, 0, "", "")
    # rbp chain: [bp] = next rbp (0), [bp + 8] = RA into the table's binary
    bp = SP + 16
    data = _stack(0, 0, 0, TEXT + 0x310)
    frames, reason = walk(StackCopy(0x10000010, SP, bp, data), [ENTRY, jit], ROWS)
    assert frames == [0x10000010, TEXT + 0x310] and reason == L.END
    # a broken chain (rbp below rsp) ends it
    frames, reason = walk(StackCopy(0x10000010, SP, SP - 8, data), [ENTRY, jit], ROWS)
    assert frames == [0x10000010] and reason == L.FP_END


def test_stop_rows_give_their_reason_and_gaps_no_row() -> None:
    copy = StackCopy(TEXT + 0x410, SP, 0, b"")
    assert walk(copy, [ENTRY], ROWS) == ([TEXT + 0x410], L.NO_ROW)
    copy = StackCopy(TEXT + 0x50, SP, 0, b"")  # before the first row
    assert walk(copy, [ENTRY], ROWS) == ([TEXT + 0x50], L.NO_ROW)


def test_depth_is_bounded() -> None:
    rows = _rows((0x100, 1, 0, L.kind(L.CFA_RSP)))  # every frame returns into itself
    entry = Entry(TEXT, TEXT + 0x1000, TEXT, 0, 1, "/bin/x", "k")
    data = _stack(*([TEXT + 0x110] * 200))
    frames, reason = walk(StackCopy(TEXT + 0x110, SP, 0, data), [entry], rows, max_frames=10)
    assert len(frames) == 10 and reason == L.DEPTH
