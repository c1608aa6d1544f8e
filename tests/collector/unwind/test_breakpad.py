"""Breakpad STACK CFI text -> rows: the rule shapes, function ends, and hostile input."""

from __future__ import annotations

import random

import pytest

from collector.unwind import layout as L
from collector.unwind.breakpad import CfiError, Rows, build_rows
from collector.unwind.table import cfi_text

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"

TEXT = b"""STACK CFI INIT 1000 20 .cfa: $rsp 8 + .ra: .cfa -8 + ^
STACK CFI 1001 .cfa: $rsp 16 + $rbp: .cfa -16 + ^
STACK CFI 1004 .cfa: $rbp 16 +
STACK CFI 101f .cfa: $rsp 8 +
STACK CFI INIT 1020 10 .cfa: $rsp 8 + .ra: .cfa -8 + ^
STACK CFI 1024 .cfa: $rsp 48 + $rbx: .cfa -16 + ^
STACK CFI INIT 1040 10 .cfa: $rsp 8 +
STACK CFI INIT 1050 10 .cfa: $rsp 8 + .ra: $rdx
STACK CFI INIT 1060 10 .cfa: $rdi 8 + .ra: .cfa -8 + ^
STACK CFI INIT 1070 10 .cfa: $rsp 12 + .ra: .cfa -8 + ^
STACK CFI INIT 1080 8 .cfa: $rsp 8 + .ra: .cfa -8 + ^ $rbp: $r12
"""


def decode(rows: Rows) -> list[tuple[int, str]]:
    """(vaddr, rule) per row, the rule spelled like readelf: rsp+16 rbp=c-16 / stop:reason."""
    out = []
    for v in rows.values:
        pc, cfa8, rbp8, kind = L.ROW.unpack(v.to_bytes(8, "little"))
        cfa, rbp, reason = kind & 3, (kind >> 2) & 3, kind >> 4
        if cfa == L.CFA_STOP:
            rule = f"stop:{L.REASONS[reason]}"
        else:
            rule = f"{'rsp' if cfa == L.CFA_RSP else 'rbp'}+{cfa8 * 8}"
            if rbp == L.RBP_SAVED:
                rule += f" rbp=c-{rbp8 * 8}"
            elif rbp == L.RBP_UNKNOWN:
                rule += " rbp=?"
        out.append((rows.base + pc, rule))
    return out


def check_invariants(rows: Rows) -> None:
    pcs = rows.pcs()
    assert pcs == sorted(set(pcs)), "rows must be sorted with unique pcs"
    for v in rows.values:
        kind = v >> 56
        assert kind & 3 in (L.CFA_STOP, L.CFA_RSP, L.CFA_RBP)
        if kind & 3 == L.CFA_STOP:
            assert (kind >> 4) < len(L.REASONS)
        else:
            assert (v >> 32) & 0xFFFF > 0  # a CFA offset of 0 would never make progress


def test_rules_accumulate_and_functions_end_where_nothing_follows() -> None:
    rows = build_rows(TEXT)
    assert decode(rows) == [
        (0x1000, "rsp+8"),
        (0x1001, "rsp+16 rbp=c-16"),
        (0x1004, "rbp+16 rbp=c-16"),  # the rbp rule carries over: rows only name changes
        (0x101F, "rsp+8 rbp=c-16"),
        (0x1020, "rsp+8"),  # the next function starts where this one ends: no end marker
        (0x1024, "rsp+48"),  # rbx is not tracked
        (0x1030, "stop:no_row"),  # a gap: a pc here must not inherit 0x1024's rule
        (0x1040, "stop:end"),  # no return address: the outermost frame (_start)
        (0x1050, "stop:signal_frame"),  # return address not at CFA-8
        (0x1060, "stop:table_stop"),  # CFA from another register
        # 0x1070: rsp+12 cannot be stored in 8-byte units: a stop row, merged with the one above
        (0x1080, "rsp+8 rbp=?"),  # rbp lives in r12: unknown from here up
        (0x1088, "stop:no_row"),
    ]
    assert rows.base == 0x1000
    assert rows.stats.functions == 7
    assert rows.stats.merged == 1
    assert rows.stats.malformed == 0
    check_invariants(rows)


def test_plt_range_becomes_one_stop_row_and_the_rule_after_it_survives() -> None:
    text = b"""STACK CFI INIT 1000 10 .cfa: $rsp 16 + .ra: .cfa -8 + ^
STACK CFI 1006 .cfa: $rsp 24 +
STACK CFI INIT 1010 20 .cfa: $rsp 8 + .ra: .cfa -8 + ^
STACK CFI 1014 .cfa: $rsp 16 +
"""
    rows = build_rows(text, stop_ranges=((0x1000, 0x1012, L.PLT),))
    assert decode(rows) == [
        (0x1000, "stop:plt"),
        (0x1012, "rsp+8"),  # what was in effect at the end of the range
        (0x1014, "rsp+16"),
        (0x1030, "stop:no_row"),
    ]


def test_an_entry_point_in_a_gap_is_the_outermost_frame_and_elsewhere_changes_nothing() -> None:
    rows = build_rows(TEXT, entry=0x1034)
    assert decode(rows)[6:8] == [(0x1030, "stop:no_row"), (0x1034, "stop:end")]
    assert (0x1040, "stop:end") not in decode(rows)  # merged with the entry's row
    assert decode(build_rows(TEXT, entry=0x1024)) == decode(build_rows(TEXT))  # in a function
    assert decode(build_rows(TEXT, entry=0x2000)) == decode(build_rows(TEXT))  # past them all
    check_invariants(rows)


def test_overlapping_function_cuts_the_previous_one() -> None:
    text = b"""STACK CFI INIT 1000 40 .cfa: $rsp 8 + .ra: .cfa -8 + ^
STACK CFI 1030 .cfa: $rsp 16 +
STACK CFI INIT 1020 10 .cfa: $rsp 8 + .ra: .cfa -8 + ^
STACK CFI 1024 .cfa: $rsp 32 +
"""
    rows = build_rows(text)
    assert decode(rows) == [(0x1000, "rsp+8"), (0x1024, "rsp+32"), (0x1030, "stop:no_row")]
    assert rows.stats.overlaps == 1


@pytest.mark.parametrize(
    "line",
    [
        b"STACK CFI INIT zz 10 .cfa: $rsp 8 + .ra: .cfa -8 + ^",
        b"STACK CFI INIT 2000 .cfa: $rsp 8 +",
        b"STACK CFI INIT 2000 0 .cfa: $rsp 8 + .ra: .cfa -8 + ^",
        b"STACK CFI INIT 2000 10 $rsp 8 +",
        b"STACK CFI INIT 2000 10 .cfa: $rsp 99999999999999999999999999 +",
        b"STACK CFI INIT 2000 -10 .cfa: $rsp 8 +",
        b"STACK CFI INIT 2000 10 .cfa: $rsp 8 + .ra: .cfa -8 + ^ " + b"x" * 5000,
        b"garbage",
        b"\xff\xfe STACK",
    ],
)
def test_malformed_line_is_counted_and_its_function_dropped(line: bytes) -> None:
    text = line + b"\nSTACK CFI 2004 .cfa: $rsp 16 +\n" + TEXT
    rows = build_rows(text)
    assert rows.stats.malformed == 1
    assert decode(rows) == decode(build_rows(TEXT))  # the good functions are all there


def test_rows_out_of_order_or_outside_their_function_are_malformed() -> None:
    text = b"""STACK CFI INIT 1000 10 .cfa: $rsp 8 + .ra: .cfa -8 + ^
STACK CFI 1008 .cfa: $rsp 16 +
STACK CFI 1004 .cfa: $rsp 24 +
STACK CFI INIT 2000 10 .cfa: $rsp 8 + .ra: .cfa -8 + ^
STACK CFI 2010 .cfa: $rsp 16 +
STACK CFI INIT 3000 10 .cfa: $rsp 8 + .ra: .cfa -8 + ^
"""
    rows = build_rows(text)
    assert rows.stats.malformed == 2
    assert decode(rows) == [(0x3000, "rsp+8"), (0x3010, "stop:no_row")]


def test_budgets_raise_cfi_error() -> None:
    with pytest.raises(CfiError):
        build_rows(b"")
    with pytest.raises(CfiError):
        build_rows(b"nothing useful\n")
    with pytest.raises(CfiError, match="rows"):
        build_rows(TEXT, max_rows=5)
    with pytest.raises(CfiError, match="lines"):
        build_rows(TEXT, max_lines=3)
    far = b"STACK CFI INIT 1000 10 .cfa: $rsp 8 + .ra: .cfa -8 + ^\n"
    far += b"STACK CFI INIT 200001000 10 .cfa: $rsp 8 + .ra: .cfa -8 + ^\n"
    with pytest.raises(CfiError, match="4 GiB"):
        build_rows(far)


def test_mutated_real_text_never_raises_anything_else() -> None:
    """Seeded mutations of libc's real CFI text: only CfiError escapes, and every table that
    comes out is sorted and well-formed."""
    base = cfi_text(LIBC)[:60_000]
    rng = random.Random(8)
    tokens = [b" ", b"\n", b"-", b"+", b"^", b":", b"$rsp", b".cfa", b"ffffffffffffffffff", b"0"]
    built = 0
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 20)):
            pos = rng.randrange(len(data))
            op = rng.random()
            if op < 0.4:
                data[pos] = rng.randrange(256)
            elif op < 0.7:
                data[pos:pos] = rng.choice(tokens)
            elif op < 0.9:
                del data[pos : pos + rng.randint(1, 40)]
            else:
                data = data[:pos]
        try:
            rows = build_rows(bytes(data))
        except CfiError:
            continue
        check_invariants(rows)
        built += 1
    assert built > 200  # most mutations spoil a few functions, not the whole table
