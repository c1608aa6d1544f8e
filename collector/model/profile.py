"""The one deduplicated profile model that every encoder reads.

Tables follow the OTLP ProfilesDictionary rules: entry 0 of every table is the zero value
and index 0 means "unset". pprof ids are 1-based, so table index == pprof id.

A ProfileSet is immutable once built (frozen dataclasses and tuples over columns nobody
writes to after build): the pipeline hands the same object to every exporter of a pipeline,
each encoding it in its own worker thread, so no encoder may change it and none needs to
copy it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from collector.model.frames import Function, Location, Mapping, ProcessInfo
from collector.model.raw import ProfileType

ZERO_MAPPING = Mapping(0, 0, 0, "")
ZERO_FUNCTION = Function("")
ZERO_LOCATION = Location(None, 0)

# Sample attribute keys (OTel semantic conventions).
ATTR_THREAD_ID = "thread.id"
ATTR_THREAD_NAME = "thread.name"
ATTR_CPU = "cpu.logical_number"


@dataclass(frozen=True, slots=True)
class Dictionary:
    strings: tuple[str, ...] = ("",)
    mappings: tuple[Mapping, ...] = (ZERO_MAPPING,)
    locations: tuple[Location, ...] = (ZERO_LOCATION,)
    functions: tuple[Function, ...] = (ZERO_FUNCTION,)
    # Each stack is a tuple of location indices, leaf first.
    stacks: tuple[tuple[int, ...], ...] = ((),)
    # (key, value) with value an int or a str; entry 0 is the empty attribute.
    attributes: tuple[tuple[str, int | str], ...] = (("", ""),)
    # (trace_id 16 bytes, span_id 8 bytes); entry 0 is all zero.
    links: tuple[tuple[bytes, bytes], ...] = ((bytes(16), bytes(8)),)
    # The span name of each link (same index; "" when unknown), e.g. for folded prefixes.
    link_names: tuple[str, ...] = ("",)


class SampleRecord(NamedTuple):
    """Samples merged on (stack, attributes, link): one value and one timestamp each.

    ``values`` are the first value type's, one per occurrence; ``more[k]`` is the column of
    the profile type's extra value k, parallel to ``values`` (empty for one-valued types).
    Columns are tuples or any other sequence of ints (the builder keeps a window's
    occurrences in flat arrays and slices tuples out of them at build); nobody changes them.
    A NamedTuple, not a frozen dataclass: a window makes one per distinct stack, thread and
    CPU (up to one per sample on a big host), and a tuple is built in a third of the time.
    """

    stack_index: int
    attribute_indices: tuple[int, ...]
    link_index: int
    values: Sequence[int] = ()
    timestamps: Sequence[int] = ()
    more: tuple[Sequence[int], ...] = ()

    @property
    def total(self) -> int:
        return sum(self.values)

    def column(self, k: int) -> Sequence[int]:
        """Value type ``k``'s value of every occurrence (0: ``values``)."""
        if k == 0:
            return self.values
        if k <= len(self.more):
            return self.more[k - 1]
        return (0,) * len(self.values)

    def totals(self, n: int) -> list[int]:
        """The sum of each of the first ``n`` value types over the occurrences."""
        return [sum(self.column(k)) for k in range(n)]


@dataclass(frozen=True, slots=True)
class ProcessProfile:
    process: ProcessInfo
    # A tuple, or the builder's column-backed Records (collector/model/records.py)
    samples: Sequence[SampleRecord] = ()


# eq=False: a ProfileSet is compared by identity (the same object reaches every exporter);
# a field-by-field comparison or hash over a whole window would be costly and meaningless.
@dataclass(frozen=True, slots=True, eq=False)
class ProfileSet:
    """One time window of one profile type: the shared dictionary plus one group per process."""

    profile_type: ProfileType
    start_ns: int
    end_ns: int
    dictionary: Dictionary
    processes: tuple[ProcessProfile, ...]
    dropped_samples: int = 0  # samples refused because the builder was full
    sample_count: int = field(init=False)

    def __post_init__(self) -> None:
        n = sum(len(s.values) for p in self.processes for s in p.samples)
        object.__setattr__(self, "sample_count", n)

    def attribute(self, index: int) -> tuple[str, int | str]:
        return self.dictionary.attributes[index]
