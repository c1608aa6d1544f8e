"""A window's records as columns: what ProcessProfile.samples holds when the builder made it.

A busy host's window holds up to one record per sample (the cpu attribute alone splits a
thread's samples 96 ways on a 96-CPU host). One object per record, kept for the whole
encoding, would be tens of thousands of objects that every full garbage collection of the
process traverses; here a window is a handful of flat arrays, and a SampleRecord is made
only while an encoder looks at it (and freed right after, never reaching the collector's
old generation).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import overload

from collector.model.profile import SampleRecord


class RecordColumns:
    """Every record of a window, processes' records contiguous, occurrences sorted by record
    (``offsets[r]:offsets[r + 1]`` are record r's)."""

    __slots__ = ("attrs", "links", "more", "offsets", "stacks", "times", "values")

    def __init__(
        self,
        stacks: array,  # type: ignore[type-arg]
        attrs: list[tuple[int, ...]],
        links: array,  # type: ignore[type-arg]
        offsets: array,  # type: ignore[type-arg]
        values: array,  # type: ignore[type-arg]
        times: array,  # type: ignore[type-arg]
        more: list[array],  # type: ignore[type-arg]
    ) -> None:
        self.stacks = stacks
        self.attrs = attrs
        self.links = links
        self.offsets = offsets
        self.values = values
        self.times = times
        self.more = more


class Records(Sequence[SampleRecord]):
    """Records ``lo`` to ``hi`` of ``columns`` as a read-only sequence of SampleRecords."""

    __slots__ = ("_cols", "_hi", "_lo")

    def __init__(self, columns: RecordColumns, lo: int, hi: int) -> None:
        self._cols = columns
        self._lo = lo
        self._hi = hi

    def __len__(self) -> int:
        return self._hi - self._lo

    def _record(self, r: int) -> SampleRecord:
        c = self._cols
        a, b = c.offsets[r], c.offsets[r + 1]
        more = tuple([m[a:b] for m in c.more]) if c.more else ()
        return tuple.__new__(
            SampleRecord, (c.stacks[r], c.attrs[r], c.links[r], c.values[a:b], c.times[a:b], more)
        )

    @overload
    def __getitem__(self, i: int) -> SampleRecord: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[SampleRecord]: ...
    def __getitem__(self, i: int | slice) -> SampleRecord | Sequence[SampleRecord]:
        if isinstance(i, slice):
            return tuple(self)[i]
        n = self._hi - self._lo
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("record index out of range")
        return self._record(self._lo + i)

    def __iter__(self) -> Iterator[SampleRecord]:
        c = self._cols
        lo, hi = self._lo, self._hi
        new = tuple.__new__
        values, times, more = c.values, c.times, c.more
        off = c.offsets
        rows = zip(
            c.stacks[lo:hi],
            c.attrs[lo:hi],
            c.links[lo:hi],
            off[lo:hi],
            off[lo + 1 : hi + 1],
            strict=True,
        )
        if more:
            for st, at, ln, a, b in rows:
                cols = tuple([m[a:b] for m in more])
                yield new(SampleRecord, (st, at, ln, values[a:b], times[a:b], cols))
        else:
            for st, at, ln, a, b in rows:
                yield new(SampleRecord, (st, at, ln, values[a:b], times[a:b], ()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=False))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Records({len(self)} records)"
