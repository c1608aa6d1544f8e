"""Compact address -> name tables: sorted ``array('Q')`` of start addresses, sizes, and name
offsets into one bytes blob, so 100k symbols cost about 2 MB instead of 100k Python strings."""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_right

# A name without its NUL runs to the end of a string table that may be megabytes long.
MAX_NAME = 16 * 1024


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
    def empty(cls) -> SymbolTable:
        return cls(array("Q"), array("Q"), array("I"), b"")

    @classmethod
    def from_packed(cls, packed: list[int], sizes: array, names: array, blob: bytes) -> SymbolTable:
        """From ``(start << 36) | (binding rank << 32) | index`` keys into ``sizes``/``names``.

        One list of ints sorts in C and costs ~40 bytes a symbol, where a list of tuples cost
        ~170: a million symbols stay a transient ~40 MB."""
        packed.sort()
        starts, out_sizes, out_names = array("Q"), array("Q"), array("I")
        last = -1
        for key in packed:
            start = key >> 36
            if start == last:
                continue  # an alias at the same address: the first (best ranked) wins
            last = start
            i = key & 0xFFFFFFFF
            starts.append(start)
            out_sizes.append(sizes[i])
            out_names.append(names[i])
        return cls(starts, out_sizes, out_names, blob)

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
        end = self.blob.find(b"\0", off, off + MAX_NAME)
        return self.blob[off : end if end >= 0 else off + MAX_NAME].decode("utf-8", "replace")

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
