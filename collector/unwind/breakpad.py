"""Breakpad ``STACK CFI`` text (what symbolic's CfiCache writes) -> compact sorted unwind rows.

The text comes from binaries the profiled processes chose, so everything is bounded: lines,
rows, line length, and numbers. A line that does not parse is counted as malformed and the
function it belongs to is dropped (its later rows would depend on the bad one); the only
exception raised is ``CfiError`` (budget exceeded, nothing usable).

Breakpad semantics: ``STACK CFI INIT <start> <size> <rules>`` opens a function with a full rule
set; each ``STACK CFI <addr> <rules>`` changes only the registers it names, from that address
on. Rules are postfix: ``.cfa: $rsp 16 +``, ``.ra: .cfa -8 + ^``, ``$rbp: .cfa -16 + ^``.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from collector.unwind import layout as L

MAX_LINE = 4096  # a rule line longer than this is not something a compiler wrote
DEFAULT_MAX_LINES = 16_000_000

# Effects of one rule string, cached by its bytes: (cfa, ra, rbp) where each is None when the
# rule string does not mention that register. cfa: (reg, offset) or BAD; ra: True (at CFA-8) or
# False (anything else); rbp: ("saved", n) / ("same",) / ("unknown",).
_BAD = ("bad", 0)
_CFA_REGS = {b"$rsp": L.CFA_RSP, b"$rbp": L.CFA_RBP}


class CfiError(ValueError):
    """The call-frame text cannot become a table (over budget, or nothing in it parsed)."""


@dataclass(slots=True)
class CfiStats:
    lines: int = 0
    functions: int = 0
    rows: int = 0
    malformed: int = 0  # lines that did not parse (their function was dropped)
    overlaps: int = 0  # functions that started inside the previous one (it was cut)
    merged: int = 0  # rows dropped because they repeat the rule in effect
    stops: Counter[str] = field(default_factory=Counter)  # stop rows of the table by reason


def _num(tok: bytes) -> int:
    if len(tok) > 24:
        raise ValueError("number too long")
    return int(tok)


def _parse_rules(toks: list[bytes]) -> tuple[object, object, object]:
    """Raises ValueError/IndexError on text that is not Breakpad rules."""
    rules: dict[bytes, list[bytes]] = {}
    cur: list[bytes] | None = None
    for t in toks:
        if t.endswith(b":"):
            cur = rules.setdefault(t[:-1], [])
            cur.clear()
        elif cur is None:
            raise ValueError("expression before any register")
        else:
            cur.append(t)
    cfa: object = None
    ra: object = None
    rbp: object = None
    if b".cfa" in rules:
        e = rules[b".cfa"]
        if len(e) == 3 and e[0] in _CFA_REGS and e[2] == b"+":
            cfa = (_CFA_REGS[e[0]], _num(e[1]))
        elif len(e) == 1 and e[0] in _CFA_REGS:
            cfa = (_CFA_REGS[e[0]], 0)
        else:
            cfa = _BAD
    if b".ra" in rules:
        ra = rules[b".ra"] == [b".cfa", b"-8", b"+", b"^"]
    if b"$rbp" in rules:
        e = rules[b"$rbp"]
        if len(e) == 4 and e[0] == b".cfa" and e[2] == b"+" and e[3] == b"^":
            rbp = ("saved", -_num(e[1]))
        elif e == [b"$rbp"]:
            rbp = ("same",)
        else:
            rbp = ("unknown",)
    return cfa, ra, rbp


def _encode(cfa: object, ra: object, rbp: object) -> int:
    """The row's u64 as little-endian struct unwind_row bytes read it, minus the pc."""
    reason = -1
    if ra is None:
        reason = L.END  # return address undefined: the outermost frame
    elif ra is False:
        reason = L.SIGNAL
    elif cfa is None or cfa is _BAD:
        reason = L.TABLE_STOP
    else:
        reg, off = cfa  # type: ignore[misc]
        if off <= 0 or off % 8 or off // 8 > 0xFFFF:
            reason = L.TABLE_STOP
    if reason >= 0:
        return L.kind(L.CFA_STOP, reason=reason) << 56
    cfa_off = off // 8
    rbp_rule, rbp_off = L.RBP_SAME, 0
    if rbp is not None and rbp[0] == "saved":  # type: ignore[index]
        n = rbp[1]  # type: ignore[index]
        if n > 0 and n % 8 == 0 and n // 8 <= 0xFF:
            rbp_rule, rbp_off = L.RBP_SAVED, n // 8
        else:
            rbp_rule = L.RBP_UNKNOWN
    elif rbp is not None and rbp[0] == "unknown":  # type: ignore[index]
        rbp_rule = L.RBP_UNKNOWN
    return (cfa_off << 32) | (rbp_off << 48) | (L.kind(reg, rbp_rule) << 56)


@dataclass(slots=True)
class Parsed:
    """Rows of every function in file order: function i is (start, end, first, count) over
    the parallel arrays ``pcs`` (vaddrs) and ``attrs`` (encoded rules)."""

    funcs: list[tuple[int, int, int, int]]
    pcs: array
    attrs: array
    stats: CfiStats


def _lines(text: bytes | BinaryIO) -> Iterator[bytes]:
    if isinstance(text, bytes | bytearray | memoryview):
        yield from bytes(text).split(b"\n")
        return
    while line := text.readline(MAX_LINE + 2):  # bounded even for a file with no newline
        yield line.rstrip(b"\n")


def parse(
    text: bytes | BinaryIO,
    max_rows: int = L.MAX_TABLE_ROWS,
    max_lines: int = DEFAULT_MAX_LINES,
) -> Parsed:
    """Functions with their rows in address order, unsorted between functions.

    The hot loop touches each line once: rule strings repeat (libc: 25k lines, ~900 distinct
    rule strings), so their parse and each distinct rule state's encoding are cached."""
    stats = CfiStats()
    funcs: list[tuple[int, int, int, int]] = []
    pcs, attrs = array("Q"), array("Q")
    rules: dict[bytes, tuple[object, object, object]] = {}
    encoded: dict[tuple[object, object, object], int] = {}
    open_fn = False  # rows of the function being read go to pcs/attrs from index `first`
    start = end = first = prev = 0
    cfa: object = None
    ra: object = None
    rbp: object = None
    for line in _lines(text):
        if not line:
            continue
        stats.lines += 1
        if stats.lines > max_lines:
            raise CfiError(f"more than {max_lines} lines of call-frame text")
        try:
            if len(line) > MAX_LINE or line[:10] != b"STACK CFI ":
                raise ValueError("not a STACK CFI line")
            init = line[10:15] == b"INIT "
            if init:
                if open_fn:
                    funcs.append((start, end, first, len(pcs) - first))
                    open_fn = False
                _s, _c, _i, start_s, size_s, rest = line.split(b" ", 5)
                addr, size = int(start_s, 16), int(size_s, 16)
                if size <= 0 or addr < 0 or addr + size >= 1 << 64:
                    raise ValueError("bad range")
            else:
                if not open_fn:
                    continue  # rows of a dropped function
                _s, _c, addr_s, rest = line.split(b" ", 3)
                addr = int(addr_s, 16)
                if not prev < addr < end:
                    raise ValueError("row outside its function or out of order")
            eff = rules.get(rest)
            if eff is None:
                eff = _parse_rules(rest.split())
                if len(rules) < 65536:
                    rules[rest] = eff
        except (ValueError, IndexError):
            stats.malformed += 1
            if open_fn:  # a bad row: the function's earlier rows cannot be trusted either
                del pcs[first:], attrs[first:]
                open_fn = False
            continue
        if init:
            start, end, first, open_fn = addr, addr + size, len(pcs), True
            cfa, ra, rbp = eff
        else:
            if eff[0] is not None:
                cfa = eff[0]
            if eff[1] is not None:
                ra = eff[1]
            if eff[2] is not None:
                rbp = eff[2]
        prev = addr
        key = (cfa, ra, rbp)
        a = encoded.get(key)
        if a is None:
            a = encoded[key] = _encode(cfa, ra, rbp)
        pcs.append(addr)
        attrs.append(a)
        if len(pcs) > max_rows:
            raise CfiError(f"more than {max_rows} call-frame rows")
    if open_fn:
        funcs.append((start, end, first, len(pcs) - first))
    stats.functions = len(funcs)
    return Parsed(funcs, pcs, attrs, stats)


@dataclass(slots=True)
class Rows:
    """A binary's sorted rows: ``values[i]`` is struct unwind_row i as a little-endian u64."""

    base: int  # link-time vaddr that row pc 0 stands for
    values: array  # array('Q')
    stats: CfiStats

    def __len__(self) -> int:
        return len(self.values)

    def tobytes(self) -> bytes:
        return self.values.tobytes()

    def pcs(self) -> list[int]:
        return [v & 0xFFFFFFFF for v in self.values]


def build_rows(
    text: bytes | BinaryIO,
    stop_ranges: tuple[tuple[int, int, int], ...] = (),
    max_rows: int = L.MAX_TABLE_ROWS,
    max_lines: int = DEFAULT_MAX_LINES,
    entry: int = 0,
) -> Rows:
    """Sorted, merged rows with end markers at function ends that no function continues.

    ``stop_ranges``: (lo, hi, reason) vaddr ranges whose rows are replaced by one stop row
    (PLT stubs, whose real rule is a DWARF expression symbolic leaves out). ``entry``: the ELF
    entry point; when no function's rows cover it (ld.so's ``_start`` is assembly without
    CFI), the code from it to the next function is the outermost frame (``end``), not a gap:
    a process sampled while ld.so maps its libraries has a whole stack."""
    p = parse(text, max_rows, max_lines)
    stats, funcs, pcs, attrs = p.stats, p.funcs, p.pcs, p.attrs
    if not funcs:
        raise CfiError("no call-frame rows")
    funcs.sort()
    end_marker = L.kind(L.CFA_STOP, reason=L.NO_ROW) << 56
    mpcs, mattrs = array("Q"), array("Q")
    for i, (_start, end, first, count) in enumerate(funcs):
        nxt = funcs[i + 1][0] if i + 1 < len(funcs) else None
        if nxt is not None and nxt < end:
            stats.overlaps += 1
            while count and pcs[first + count - 1] >= nxt:
                count -= 1
        mpcs.extend(pcs[first : first + count])
        mattrs.extend(attrs[first : first + count])
        if nxt is None or nxt > end:
            mpcs.append(end)
            mattrs.append(end_marker)
    for lo, hi, reason in stop_ranges:
        _override(mpcs, mattrs, lo, hi, L.kind(L.CFA_STOP, reason=reason) << 56)
    if entry:
        k = bisect_right(mpcs, entry) - 1
        if 0 <= k < len(mpcs) - 1 and mattrs[k] == end_marker:
            _override(mpcs, mattrs, entry, mpcs[k + 1], L.kind(L.CFA_STOP, reason=L.END) << 56)
    base = mpcs[0]
    if mpcs[-1] - base >= 1 << 32:
        raise CfiError("call-frame rows span more than 4 GiB of addresses")
    out = array("Q")
    last = -1
    for pc, a in zip(mpcs, mattrs, strict=True):
        if a == last:
            stats.merged += 1
            continue
        out.append((pc - base) | a)
        last = a
    if len(out) > max_rows:
        raise CfiError(f"more than {max_rows} call-frame rows")
    stats.rows = len(out)
    kinds = out.tobytes()[7::8]  # the kind byte of every row, for C-speed counting
    for reason, name in enumerate(L.REASONS):
        n = kinds.count(L.kind(L.CFA_STOP, reason=reason))
        if n:
            stats.stops[name] = n
    return Rows(base, out, stats)


def _override(pcs: array, attrs: array, lo: int, hi: int, rule: int) -> None:
    """Replace the rules in [lo, hi) by ``rule``, keeping what was in effect from hi on."""
    i, j = bisect_left(pcs, lo), bisect_left(pcs, hi)
    if i == j and (i == 0 or i == len(pcs)):
        return  # the range is outside every function: nothing to replace
    after = attrs[j - 1] if j > 0 else L.kind(L.CFA_STOP, reason=L.NO_ROW) << 56
    tail_p, tail_a = pcs[j:], attrs[j:]
    if not tail_p or tail_p[0] != hi:
        tail_p.insert(0, hi)
        tail_a.insert(0, after)
    pcs[i:] = array("Q", [lo]) + tail_p
    attrs[i:] = array("Q", [rule]) + tail_a
