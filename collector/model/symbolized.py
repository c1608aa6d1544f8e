"""What the symbolize step emits and exporters consume."""

from __future__ import annotations

from dataclasses import dataclass, field

from collector.model.frames import ProcessInfo, Stack
from collector.model.raw import ProfileType


@dataclass(slots=True)
class Sample:
    stack: Stack
    process: ProcessInfo
    tid: int
    cpu: int
    comm: str
    time_ns: int
    value: int
    trace_id: bytes = b""
    span_id: bytes = b""
    span_name: str = ""  # the linked span's name (correlate), for encoders that show it
    thread_name: str = ""  # defaults to comm when empty
    more: tuple[int, ...] = ()  # the values of the profile type's extra_values (RawSample.more)


@dataclass(slots=True)
class SymbolizedBatch:
    profile_type: ProfileType
    samples: list[Sample]
    receiver_id: str = ""
    counters: dict[str, int] = field(default_factory=dict)
    window_end: bool = False  # RawBatch.window_end, carried through the processors
