"""Compact address -> name tables: sorted ``array('Q')`` of start addresses, sizes, and name
offsets into one bytes blob, so 100k symbols cost about 2 MB instead of 100k Python strings."""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_right

from collector.elf.reader import ElfReader

_BIND_RANK = {1: 0, 2: 1, 0: 2}  # GLOBAL before WEAK before LOCAL when addresses collide


class SymbolTable:
    """Sorted function symbols. ``lookup(addr)`` returns (name, start) or None.

    ``sizes`` entries of 0 mean "unknown size": such a symbol covers up to the next one.
    """

    __slots__ = ("blob", "name_offsets", "sizes", "starts")

    def __init__(self, entries: list[tuple[int, int, int, int]], blob: bytes) -> None:
        # entries: (start, size, name_offset_into_blob, binding); names NUL-terminated in blob.
        entries.sort(key=lambda e: (e[0], _BIND_RANK.get(e[3], 3)))
        starts, sizes, names = array("Q"), array("Q"), array("Q")
        last = -1
        for start, size, name_off, _bind in entries:
            if start == last:
                continue  # an alias at the same address: the first (best ranked) wins
            last = start
            starts.append(start)
            sizes.append(size)
            names.append(name_off)
        self.starts, self.sizes, self.name_offsets, self.blob = starts, sizes, names, blob

    @classmethod
    def from_elf(cls, elf: ElfReader) -> SymbolTable:
        syms, strtab = elf.function_symbols()
        return cls(syms, strtab)

    @classmethod
    def from_names(cls, items: list[tuple[int, str]]) -> SymbolTable:
        """Build from (address, name) pairs with unknown sizes (e.g. /proc/kallsyms)."""
        parts: list[bytes] = []
        entries = []
        pos = 0
        for addr, name in items:
            raw = name.encode()
            entries.append((addr, 0, pos, 1))
            parts.append(raw)
            pos += len(raw) + 1
        parts.append(b"")
        return cls(entries, b"\0".join(parts))

    def __len__(self) -> int:
        return len(self.starts)

    def name_at(self, i: int) -> str:
        off = self.name_offsets[i]
        end = self.blob.find(b"\0", off)
        return self.blob[off : end if end >= 0 else None].decode("utf-8", "replace")

    def lookup(self, addr: int) -> tuple[str, int] | None:
        i = bisect_right(self.starts, addr) - 1
        if i < 0:
            return None
        start = self.starts[i]
        size = self.sizes[i]
        if size and addr >= start + size:
            return None
        return self.name_at(i), start

    def nbytes(self) -> int:
        """Approximate memory held (arrays + name blob)."""
        return sum(sys.getsizeof(a) for a in (self.starts, self.sizes, self.name_offsets)) + (
            sys.getsizeof(self.blob)
        )
