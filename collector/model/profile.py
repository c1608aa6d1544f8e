"""The one deduplicated profile model that every encoder reads.

Tables follow the OTLP ProfilesDictionary rules: entry 0 of every table is the zero value
and index 0 means "unset". pprof ids are 1-based, so table index == pprof id.

A ProfileSet is immutable once built (frozen dataclasses over tuples): the pipeline hands the
same object to every exporter of a pipeline, each encoding it in its own worker thread, so no
encoder may change it and none needs to copy it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass(frozen=True, slots=True)
class SampleRecord:
    """Samples merged on (stack, attributes, link): one value and one timestamp each.

    ``values`` are the first value type's, one per occurrence; ``more[k]`` is the column of
    the profile type's extra value k, parallel to ``values`` (empty for one-valued types).
    """

    stack_index: int
    attribute_indices: tuple[int, ...]
    link_index: int
    values: tuple[int, ...] = ()
    timestamps: tuple[int, ...] = ()
    more: tuple[tuple[int, ...], ...] = ()

    @property
    def total(self) -> int:
        return sum(self.values)

    def column(self, k: int) -> tuple[int, ...]:
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
    samples: tuple[SampleRecord, ...] = ()


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
