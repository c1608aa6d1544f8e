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

    ``sizes`` is empty when no size is known (kallsyms): each symbol then covers up to the
    next one; a size of 0 in a non-empty array means the same for that symbol.
    """

    __slots__ = ("blob", "name_offsets", "sizes", "starts")

    def __init__(self, starts: array, sizes: array, name_offsets: array, blob: bytes) -> None:
        # Already sorted by address, one entry per address; names NUL-terminated in blob.
        self.starts, self.sizes, self.name_offsets, self.blob = starts, sizes, name_offsets, blob

    @classmethod
    def from_entries(cls, entries: list[tuple[int, int, int, int]], blob: bytes) -> SymbolTable:
        """From (start, size, name offset, binding) tuples as an ELF symbol table gives them."""
        entries.sort(key=lambda e: (e[0], _BIND_RANK.get(e[3], 3)))
        starts, sizes, names = array("Q"), array("Q"), array("I")
        last = -1
        for start, size, name_off, _bind in entries:
            if start == last:
                continue  # an alias at the same address: the first (best ranked) wins
            last = start
            starts.append(start)
            sizes.append(size)
            names.append(name_off)
        return cls(starts, sizes, names, blob)

    @classmethod
    def from_elf(cls, elf: ElfReader) -> SymbolTable:
        syms, strtab = elf.function_symbols()
        return cls.from_entries(syms, strtab)

    @classmethod
    def from_unsorted(cls, addrs: array, name_offsets: array, blob: bytes) -> SymbolTable:
        """From parallel arrays without sizes (e.g. /proc/kallsyms), sorted here."""
        n = len(addrs)
        if any(addrs[i] > addrs[i + 1] for i in range(n - 1)):
            order = sorted(range(n), key=addrs.__getitem__)
            addrs = array("Q", (addrs[i] for i in order))
            name_offsets = array("I", (name_offsets[i] for i in order))
        starts, names = array("Q"), array("I")
        last = -1
        for i in range(n):
            a = addrs[i]
            if a != last:
                last = a
                starts.append(a)
                names.append(name_offsets[i])
        return cls(starts, array("Q"), names, blob)

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
        if self.sizes:
            size = self.sizes[i]
            if size and addr >= start + size:
                return None
        return self.name_at(i), start

    def nbytes(self) -> int:
        """Memory held (arrays + name blob)."""
        return sum(sys.getsizeof(a) for a in (self.starts, self.sizes, self.name_offsets)) + (
            sys.getsizeof(self.blob)
        )
