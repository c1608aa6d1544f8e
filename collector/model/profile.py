"""The one deduplicated profile model that every encoder reads.

Tables follow the OTLP ProfilesDictionary rules: entry 0 of every table is the zero value
and index 0 means "unset". pprof ids are 1-based, so table index == pprof id.
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


@dataclass(slots=True)
class Dictionary:
    strings: list[str] = field(default_factory=lambda: [""])
    mappings: list[Mapping] = field(default_factory=lambda: [ZERO_MAPPING])
    locations: list[Location] = field(default_factory=lambda: [ZERO_LOCATION])
    functions: list[Function] = field(default_factory=lambda: [ZERO_FUNCTION])
    # Each stack is a tuple of location indices, leaf first.
    stacks: list[tuple[int, ...]] = field(default_factory=lambda: [()])
    # (key, value) with value an int or a str; entry 0 is the empty attribute.
    attributes: list[tuple[str, int | str]] = field(default_factory=lambda: [("", "")])
    # (trace_id 16 bytes, span_id 8 bytes); entry 0 is all zero.
    links: list[tuple[bytes, bytes]] = field(default_factory=lambda: [(bytes(16), bytes(8))])


@dataclass(slots=True)
class SampleRecord:
    """Samples merged on (stack, attributes, link): one value and one timestamp each."""

    stack_index: int
    attribute_indices: tuple[int, ...]
    link_index: int
    values: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.values)


@dataclass(slots=True)
class ProcessProfile:
    process: ProcessInfo
    samples: list[SampleRecord] = field(default_factory=list)


@dataclass(slots=True)
class ProfileSet:
    """One time window of one profile type: the shared dictionary plus one group per process."""

    profile_type: ProfileType
    start_ns: int
    end_ns: int
    dictionary: Dictionary
    processes: list[ProcessProfile]
    dropped_samples: int = 0  # samples refused because the window was full

    @property
    def sample_count(self) -> int:
        return sum(len(s.values) for p in self.processes for s in p.samples)

    def attribute(self, index: int) -> tuple[str, int | str]:
        return self.dictionary.attributes[index]
