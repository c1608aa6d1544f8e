"""The Go line table (``.gopclntab``) held in memory: header, function table, pc-value tables.

Formats (the magic, a little-endian u32): 0xfffffffa Go 1.16-1.17, 0xfffffff0 1.18-1.19,
0xfffffff1 1.20+. The header's pointer-sized words give the function count and the offsets of
the sub-tables from the header; from Go 1.18 entries are u32 offsets from the text start (which
Go 1.26 no longer writes in the header: the caller passes it, see locate.py).

Every offset comes from the binary, so every read is checked against the blob (``GoSymError``)
and every loop is bounded by the bytes it walks. Names and files are capped in length.
"""

from __future__ import annotations

import struct
from array import array
from bisect import bisect_right

from collector.gosym.buildinfo import GoSymError

MAGICS = {0xFFFFFFFA: (1, 16), 0xFFFFFFF0: (1, 18), 0xFFFFFFF1: (1, 20)}
_MAX_NAME = 16 << 10
_MAX_FUNCS = 4_000_000  # the largest Go binaries have a few hundred thousand
_MAX_STEPS = 1 << 20  # pc-value pairs walked for one lookup

PCDATA_INL_TREE_INDEX = 2
FUNCDATA_INL_TREE = 3


class FuncRecord:
    """One ``_func`` record, decoded on demand (the table holds only offsets)."""

    __slots__ = (
        "cu_offset",
        "entry",
        "funcdata_at",
        "name_off",
        "nfuncdata",
        "npcdata",
        "pcdata_at",
        "pcfile",
        "pcln",
        "pcsp",
        "start_line",
    )

    def __init__(self) -> None:
        self.entry = self.name_off = self.pcfile = self.pcln = self.cu_offset = self.pcsp = 0
        self.npcdata = self.nfuncdata = self.start_line = self.pcdata_at = self.funcdata_at = 0


class Pclntab:
    """Parsed header and function table of one ``.gopclntab`` blob."""

    def __init__(self, blob: bytes, text_start: int | None = None) -> None:
        if len(blob) < 8:
            raise GoSymError("pclntab: shorter than its header")
        self.blob = blob
        magic = struct.unpack_from("<I", blob, 0)[0]
        self.order = "<"
        if magic not in MAGICS:
            magic = struct.unpack_from(">I", blob, 0)[0]
            self.order = ">"
        if magic not in MAGICS or blob[4:6] != b"\0\0":
            raise GoSymError(f"pclntab: unknown magic {blob[:4].hex()}")
        self.format = MAGICS[magic]
        self.quantum, self.ptr = blob[6], blob[7]
        if self.quantum not in (1, 2, 4) or self.ptr not in (4, 8):
            raise GoSymError(f"pclntab: quantum {self.quantum}, pointer size {self.ptr}")
        p = "Q" if self.ptr == 8 else "I"
        new = self.format >= (1, 18)
        words = self.u(self.order + p * (8 if new else 7), 8)
        if new:
            nfunc, self.nfiles, header_text, fname, cu, ftab, pctab, pcln = words
        else:
            nfunc, self.nfiles, fname, cu, ftab, pctab, pcln = words
            header_text = 0
        if nfunc > _MAX_FUNCS:
            raise GoSymError(f"pclntab: {nfunc} functions")
        self.nfunc = nfunc
        for off in (fname, cu, ftab, pctab, pcln):
            if off >= len(blob):
                raise GoSymError(f"pclntab: sub-table offset {off:#x} past the table")
        self.funcname, self.cutab, self.filetab, self.pctab, self.pcln = (
            fname,
            cu,
            ftab,
            pctab,
            pcln,
        )
        # Function table: nfunc+1 (entry, funcoff) pairs, the last one the end of the text.
        if new:
            self.text_start = header_text if text_start is None else text_start
            raw = self._slice(pcln, (nfunc + 1) * 8, "function table")
            table = array("I", raw)
            self._entry_add = self.text_start
        else:
            self.text_start = text_start or 0
            raw = self._slice(pcln, (nfunc + 1) * 2 * self.ptr, "function table")
            table = array("Q" if self.ptr == 8 else "I", raw)
            self._entry_add = 0
        if (self.order == ">") != (struct.pack("=I", 1) == struct.pack(">I", 1)):
            table.byteswap()
        self.entries = table[0::2]  # offsets (1.18+) or addresses, sorted
        self.funcoffs = table[1::2]
        if any(self.entries[i] > self.entries[i + 1] for i in range(nfunc)):
            raise GoSymError("pclntab: function table is not sorted")

    # ---- bounded reads ---------------------------------------------------------------
    def u(self, fmt: str, at: int) -> tuple[int, ...]:
        if at < 0 or at + struct.calcsize(fmt) > len(self.blob):
            raise GoSymError(f"pclntab: read at {at:#x} past the table")
        return struct.unpack_from(fmt, self.blob, at)

    def _slice(self, at: int, size: int, what: str) -> bytes:
        if at < 0 or size < 0 or at + size > len(self.blob):
            raise GoSymError(f"pclntab: {what} ({size:#x} bytes at {at:#x}) past the table")
        return self.blob[at : at + size]

    def cstring(self, at: int) -> str:
        if at < 0 or at >= len(self.blob):
            raise GoSymError(f"pclntab: string at {at:#x} past the table")
        end = self.blob.find(b"\0", at, at + _MAX_NAME)
        if end < 0:
            raise GoSymError(f"pclntab: string at {at:#x} is not terminated")
        return self.blob[at:end].decode("utf-8", "replace")

    # ---- functions -------------------------------------------------------------------
    def entry(self, i: int) -> int:
        return self.entries[i] + self._entry_add

    def index_of(self, pc: int) -> int | None:
        """Index of the function whose [entry, next entry) holds ``pc``."""
        off = pc - self._entry_add
        i = bisect_right(self.entries, off) - 1
        if i < 0 or i >= self.nfunc:
            return None
        return i

    def record(self, i: int) -> FuncRecord:
        r = FuncRecord()
        at = self.pcln + self.funcoffs[i]
        o = self.order
        if self.format >= (1, 18):
            n = 10 if self.format >= (1, 20) else 9
            f = self.u(o + "I" * n + "BBBB", at)
            r.entry = f[0] + self.text_start
            r.name_off, r.pcfile, r.pcln, r.npcdata, r.cu_offset = f[1], f[5], f[6], f[7], f[8]
            r.pcsp = f[4]
            r.start_line = struct.unpack("i", struct.pack("I", f[9]))[0] if n == 10 else 0
            r.nfuncdata = f[-1]
            r.pcdata_at = at + 4 * n + 4
            r.funcdata_at = r.pcdata_at + 4 * r.npcdata
        else:  # 1.16/1.17: a pointer-sized entry, then the same u32 fields, no start line
            p = "Q" if self.ptr == 8 else "I"
            f = self.u(o + p + "iiIIIIII" + "BBBB", at)
            r.entry, r.name_off, r.pcfile, r.pcln, r.npcdata, r.cu_offset = (
                f[0],
                f[1],
                f[5],
                f[6],
                f[7],
                f[8],
            )
            r.pcsp = f[4]
            r.nfuncdata = f[-1]
            r.pcdata_at = at + self.ptr + 32 + 4
            end = r.pcdata_at + 4 * r.npcdata
            r.funcdata_at = (end + self.ptr - 1) & ~(self.ptr - 1)
        return r

    def name(self, name_off: int) -> str:
        return self.cstring(self.funcname + name_off)

    def file(self, cu_offset: int, fileno: int) -> str:
        if fileno < 0:
            return ""
        (off,) = self.u(self.order + "I", self.cutab + 4 * (cu_offset + fileno))
        if off == 0xFFFFFFFF:
            return ""
        return self.cstring(self.filetab + off)

    def pcdata_table(self, r: FuncRecord, index: int) -> int:
        if index >= r.npcdata:
            return 0
        return self.u(self.order + "I", r.pcdata_at + 4 * index)[0]

    def funcdata_offset(self, r: FuncRecord, index: int) -> int | None:
        """1.18+: u32 offset from go:func.* (None: absent); 1.16/1.17: an address (0: absent)."""
        if index >= r.nfuncdata:
            return None
        if self.format >= (1, 18):
            (v,) = self.u(self.order + "I", r.funcdata_at + 4 * index)
            return None if v == 0xFFFFFFFF else v
        (v,) = self.u(
            self.order + ("Q" if self.ptr == 8 else "I"), r.funcdata_at + self.ptr * index
        )
        return v or None

    def value(self, table_off: int, entry: int, pc: int) -> int:
        """The pc-value table's value at ``pc`` (-1 when there is no table or pc is past it)."""
        if table_off == 0:
            return -1
        blob, at = self.blob, self.pctab + table_off
        n = len(blob)
        val, cur, first = -1, entry, True
        for _ in range(_MAX_STEPS):
            uv, at = _uvarint(blob, at, n)
            if uv == 0 and not first:
                return -1
            first = False
            val += -(uv >> 1) - 1 if uv & 1 else uv >> 1
            pcdelta, at = _uvarint(blob, at, n)
            cur += pcdelta * self.quantum
            if pc < cur:
                return val
        raise GoSymError("pclntab: a pc-value table longer than its budget")

    def ranges(self, table_off: int, entry: int, end: int) -> list[tuple[int, int]]:
        """(pc, value) at each change of a pc-value table over [entry, end), first at entry."""
        if table_off == 0:
            return []
        blob, at = self.blob, self.pctab + table_off
        n = len(blob)
        out: list[tuple[int, int]] = []
        val, cur, first = -1, entry, True
        for _ in range(_MAX_STEPS):
            uv, at = _uvarint(blob, at, n)
            if uv == 0 and not first:
                return out
            first = False
            val += -(uv >> 1) - 1 if uv & 1 else uv >> 1
            pcdelta, at = _uvarint(blob, at, n)
            if cur >= end:
                return out
            if not out or out[-1][1] != val:
                out.append((cur, val))
            cur += pcdelta * self.quantum
        raise GoSymError("pclntab: a pc-value table longer than its budget")

    def max_value(self, table_off: int, entry: int) -> int:
        """The largest value a pc-value table takes (-1 for none): sizes an inlining tree."""
        blob, at = self.blob, self.pctab + table_off
        n = len(blob)
        val, best, first = -1, -1, True
        for _ in range(_MAX_STEPS):
            uv, at = _uvarint(blob, at, n)
            if uv == 0 and not first:
                return best
            first = False
            val += -(uv >> 1) - 1 if uv & 1 else uv >> 1
            best = max(best, val)
            _pcdelta, at = _uvarint(blob, at, n)
        raise GoSymError("pclntab: a pc-value table longer than its budget")


def _uvarint(blob: bytes, at: int, n: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= n or shift > 63:
            raise GoSymError("pclntab: pc-value table runs past the table")
        b = blob[at]
        at += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, at
        shift += 7
