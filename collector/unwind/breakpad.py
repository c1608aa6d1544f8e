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
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field

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
    stops: Counter[str] = field(default_factory=Counter)  # stop rows by reason


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


def _encode(cfa: object, ra: object, rbp: object, stats: CfiStats) -> int:
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
        stats.stops[L.REASONS[reason]] += 1
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
class _Function:
    start: int
    end: int
    rows: list[tuple[int, int]]  # (vaddr, encoded attrs)


def parse(
    text: bytes, max_rows: int = L.MAX_TABLE_ROWS, max_lines: int = DEFAULT_MAX_LINES
) -> tuple[list[_Function], CfiStats]:
    """Functions with their rows in address order, unsorted between functions."""
    stats = CfiStats()
    funcs: list[_Function] = []
    cache: dict[bytes, tuple[object, object, object]] = {}
    fn: _Function | None = None
    state: list[object] = [None, None, None]
    nrows = 0
    for line in text.split(b"\n"):
        if not line:
            continue
        stats.lines += 1
        if stats.lines > max_lines:
            raise CfiError(f"more than {max_lines} lines of call-frame text")
        if len(line) > MAX_LINE or not line.startswith(b"STACK CFI "):
            stats.malformed += 1
            continue
        init = line.startswith(b"STACK CFI INIT ")
        try:
            if init:
                _s, _c, _i, start_s, size_s, rest = line.split(b" ", 5)
                start, size = int(start_s, 16), int(size_s, 16)
                if size <= 0 or start < 0 or start + size > 1 << 64:
                    raise ValueError("bad range")
                addr = start
            else:
                if fn is None:
                    continue  # rows of a dropped function
                _s, _c, addr_s, rest = line.split(b" ", 3)
                addr = int(addr_s, 16)
                prev = fn.rows[-1][0]
                if not prev < addr < fn.end:
                    raise ValueError("row outside its function or out of order")
            effects = cache.get(rest)
            if effects is None:
                effects = _parse_rules(rest.split())
                if len(cache) < 65536:
                    cache[rest] = effects
        except (ValueError, IndexError):
            stats.malformed += 1
            if fn is not None and not init:  # its earlier rows cannot be trusted either
                funcs.pop()
                nrows -= len(fn.rows)
            fn = None
            continue
        if init:
            fn = _Function(start, start + size, [])
            funcs.append(fn)
            state = list(effects)
        else:
            assert fn is not None
            for i in range(3):
                if effects[i] is not None:
                    state[i] = effects[i]
        nrows += 1
        if nrows > max_rows:
            raise CfiError(f"more than {max_rows} call-frame rows")
        fn.rows.append((addr, _encode(state[0], state[1], state[2], stats)))
    stats.functions = len(funcs)
    return funcs, stats


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
    text: bytes,
    stop_ranges: tuple[tuple[int, int, int], ...] = (),
    max_rows: int = L.MAX_TABLE_ROWS,
    max_lines: int = DEFAULT_MAX_LINES,
) -> Rows:
    """Sorted, merged rows with end markers at function ends that no function continues.

    ``stop_ranges``: (lo, hi, reason) vaddr ranges whose rows are replaced by one stop row
    (PLT stubs, whose real rule is a DWARF expression symbolic leaves out)."""
    funcs, stats = parse(text, max_rows, max_lines)
    if not funcs:
        raise CfiError("no call-frame rows")
    funcs.sort(key=lambda f: f.start)
    merged: list[tuple[int, int]] = []
    for i, f in enumerate(funcs):
        nxt = funcs[i + 1].start if i + 1 < len(funcs) else None
        rows = f.rows
        if nxt is not None and nxt < f.end:
            stats.overlaps += 1
            rows = [r for r in rows if r[0] < nxt]
        merged.extend(rows)
        if nxt is None or nxt > f.end:
            merged.append((f.end, L.kind(L.CFA_STOP, reason=L.NO_ROW) << 56))
    for lo, hi, reason in stop_ranges:
        merged = _override(merged, lo, hi, L.kind(L.CFA_STOP, reason=reason) << 56)
        stats.stops[L.REASONS[reason]] += 1
    base = merged[0][0]
    if merged[-1][0] - base >= 1 << 32:
        raise CfiError("call-frame rows span more than 4 GiB of addresses")
    out = array("Q")
    last = -1
    for pc, attrs in merged:
        if attrs == last:
            stats.merged += 1
            continue
        out.append((pc - base) | attrs)
        last = attrs
    if len(out) > max_rows:
        raise CfiError(f"more than {max_rows} call-frame rows")
    stats.rows = len(out)
    return Rows(base, out, stats)


def _override(rows: list[tuple[int, int]], lo: int, hi: int, attrs: int) -> list[tuple[int, int]]:
    """Replace the rules in [lo, hi) by ``attrs``, keeping what was in effect from hi on."""
    pcs = [r[0] for r in rows]
    i, j = bisect_left(pcs, lo), bisect_left(pcs, hi)
    if i == j and (i == 0 or i == len(rows)):
        return rows  # the range is outside every function: nothing to replace
    after = rows[j - 1][1] if j > 0 else L.kind(L.CFA_STOP, reason=L.NO_ROW) << 56
    tail = rows[j:]
    if not tail or tail[0][0] != hi:
        tail = [(hi, after), *tail]
    return [*rows[:i], (lo, attrs), *tail]
