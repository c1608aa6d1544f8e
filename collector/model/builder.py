"""Deduplicate symbolized samples into a ProfileSet (one per profile type and window)."""

from __future__ import annotations

from collections.abc import Iterable

from collector.model.frames import Function, Location, Mapping, ProcessInfo, Stack
from collector.model.profile import (
    ATTR_CPU,
    ATTR_THREAD_ID,
    ATTR_THREAD_NAME,
    ZERO_FUNCTION,
    ZERO_LOCATION,
    ZERO_MAPPING,
    Dictionary,
    ProcessProfile,
    ProfileSet,
    SampleRecord,
)
from collector.model.raw import ProfileType
from collector.model.symbolized import Sample


class _Interner:
    """Maps values to table indices; the table's entry 0 is already present."""

    __slots__ = ("index", "table")

    def __init__(self, zero: object) -> None:
        self.table: list = [zero]
        self.index: dict = {zero: 0}

    def __call__(self, value: object) -> int:
        idx = self.index.get(value)
        if idx is None:
            idx = len(self.table)
            self.table.append(value)
            self.index[value] = idx
        return idx


class _Record:
    """A SampleRecord while its window is open (lists grow; build freezes them)."""

    __slots__ = ("attrs", "link", "more", "stack", "timestamps", "values")

    def __init__(self, stack: int, attrs: tuple[int, ...], link: int, extra: int) -> None:
        self.stack = stack
        self.attrs = attrs
        self.link = link
        self.values: list[int] = []
        self.timestamps: list[int] = []
        self.more: list[list[int]] = [[] for _ in range(extra)]

    def add_more(self, more: tuple[int, ...]) -> None:
        n = len(more)
        for k, column in enumerate(self.more):
            column.append(more[k] if k < n else 0)

    def freeze(self) -> SampleRecord:
        return SampleRecord(
            self.stack,
            self.attrs,
            self.link,
            tuple(self.values),
            tuple(self.timestamps),
            tuple(tuple(c) for c in self.more),
        )


class ProfileBuilder:
    """Accumulates samples of one profile type until ``build`` is called.

    ``max_samples`` bounds memory: once that many samples sit in the builder, further ones are
    counted in ``dropped_samples`` instead of stored. (ProfileWindows closes a window when it
    is full, so in the pipeline nothing is refused here.)
    """

    def __init__(self, profile_type: ProfileType, max_samples: int = 1_000_000) -> None:
        self.profile_type = profile_type
        self.max_samples = max_samples
        self._extra = len(profile_type.extra_values)
        self._reset()

    def _reset(self) -> None:
        self._strings = _Interner("")
        self._mappings = _Interner(ZERO_MAPPING)
        self._functions = _Interner(ZERO_FUNCTION)
        self._locations = _Interner(ZERO_LOCATION)
        self._stacks: dict[Stack, int] = {}
        self._stack_tuples = _Interner(())
        self._attrs = _Interner(("", ""))
        self._links = _Interner((bytes(16), bytes(8)))
        self._link_names: list[str] = [""]
        self._thread_attrs: dict[tuple[int, str, int], tuple[int, ...]] = {}
        self._processes: dict[ProcessInfo, dict[tuple, _Record]] = {}
        self._count = 0
        self.dropped_samples = 0
        self.start_ns = 0
        self.end_ns = 0

    def __len__(self) -> int:
        return self._count

    def add_all(self, samples: Iterable[Sample]) -> None:
        for s in samples:
            self.add(s)

    def add(self, s: Sample) -> None:
        if self._count >= self.max_samples:
            self.dropped_samples += 1
            return
        self._count += 1
        stack_idx = self._stacks.get(s.stack)
        if stack_idx is None:
            stack_idx = self._stack_tuples(
                tuple(self.location_index(loc) for loc in s.stack.frames)
            )
            self._stacks[s.stack] = stack_idx
        tkey = (s.tid, s.thread_name or s.comm, s.cpu)
        attrs = self._thread_attrs.get(tkey)
        if attrs is None:
            attrs = (
                self._attrs((ATTR_THREAD_ID, s.tid)),
                self._attrs((ATTR_THREAD_NAME, tkey[1])),
                self._attrs((ATTR_CPU, s.cpu)),
            )
            self._thread_attrs[tkey] = attrs
        link = 0
        if s.trace_id:
            link = self._links((s.trace_id, s.span_id))
            if link == len(self._link_names):  # a new link: its name goes beside it
                self._link_names.append(s.span_name)
        records = self._processes.get(s.process)
        if records is None:
            records = self._processes[s.process] = {}
        key = (stack_idx, attrs, link)
        rec = records.get(key)
        if rec is None:
            rec = records[key] = _Record(stack_idx, attrs, link, self._extra)
        rec.values.append(s.value)
        if self._extra:
            rec.add_more(s.more)
        rec.timestamps.append(s.time_ns)
        t = s.time_ns
        if not self.start_ns or t < self.start_ns:
            self.start_ns = t
        if t > self.end_ns:
            self.end_ns = t

    def location_index(self, loc: Location) -> int:
        idx = self._locations.index.get(loc)
        if idx is not None:
            return idx
        if loc.mapping is not None:
            self.mapping_index(loc.mapping)
        for line in loc.lines:
            self.function_index(line.function)
        return self._locations(loc)

    def mapping_index(self, m: Mapping) -> int:
        self._strings(m.filename)
        return self._mappings(m)

    def function_index(self, f: Function) -> int:
        self._strings(f.name)
        self._strings(f.system_name)
        self._strings(f.filename)
        return self._functions(f)

    def string_index(self, s: str) -> int:
        return self._strings(s)

    def build(self, start_ns: int = 0, end_ns: int = 0) -> ProfileSet:
        """Return the window's (immutable) ProfileSet and start a fresh one.

        ``start_ns``/``end_ns`` widen the window (e.g. to the flush interval); sample times
        always lie inside the result's window.
        """
        start = min(x for x in (start_ns, self.start_ns) if x) if (start_ns or self.start_ns) else 0
        end = max(end_ns, self.end_ns)
        for proc in self._processes:
            self._strings(proc.executable_name)
            self._strings(proc.executable_path)
        d = Dictionary(
            strings=tuple(self._strings.table),
            mappings=tuple(self._mappings.table),
            locations=tuple(self._locations.table),
            functions=tuple(self._functions.table),
            stacks=tuple(self._stack_tuples.table),
            attributes=tuple(self._attrs.table),
            links=tuple(self._links.table),
            link_names=tuple(self._link_names),
        )
        ps = ProfileSet(
            profile_type=self.profile_type,
            start_ns=start,
            end_ns=end,
            dictionary=d,
            processes=tuple(
                ProcessProfile(p, tuple(r.freeze() for r in recs.values()))
                for p, recs in self._processes.items()
            ),
            dropped_samples=self.dropped_samples,
        )
        self._reset()
        return ps
