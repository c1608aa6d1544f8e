"""Deduplicate symbolized samples into a ProfileSet (one per profile type and window).

The hot path is one tuple key and one dict get per sample: samples of one process, stack,
thread, CPU and span share a record, and a new occurrence appends its value and time to the
record's arrays (8 bytes each, no int object). Tables (stack, location, function, mapping,
string, attribute) are only touched when a record is new.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable
from itertools import accumulate

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
)
from collector.model.raw import ProfileType
from collector.model.records import RecordColumns, Records
from collector.model.symbolized import Sample

_I64 = (-(1 << 63), (1 << 63) - 1)
_U64 = (0, (1 << 64) - 1)


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


def _append(column: array, value: int, bounds: tuple[int, int]) -> None:  # type: ignore[type-arg]
    """Append, saturating a value the column's type cannot hold (int64 values, uint64 times:
    what OTLP and pprof can carry anyway) instead of losing the sample."""
    try:
        column.append(value)
    except (OverflowError, TypeError):
        column.append(min(max(int(value), bounds[0]), bounds[1]))


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
        self._tid_attr: dict[int, int] = {}
        self._name_attr: dict[str, int] = {}
        self._cpu_attr: dict[int, int] = {}
        self._process_no: dict[ProcessInfo, int] = {}
        self._process_list: list[ProcessInfo] = []
        # The same stacks and processes by identity: an int key hashes in C, where Stack's
        # and ProcessInfo's __hash__ are a Python call each. ``_alive`` holds every object
        # so keyed, so no id is reused by another object while its window is open; equal
        # objects that are not the same one still meet in ``_stacks``/``_process_no``.
        self._stack_by_id: dict[int, int] = {}
        self._process_by_id: dict[int, int] = {}
        self._alive: list[object] = []
        # (process no, stack index, tid, thread name, cpu, trace id, span id) -> record no.
        # Only ints, strs and bytes: the garbage collector stops tracking such a tuple, and
        # a window's state is otherwise a few flat arrays, so the full collections that a
        # growing window triggers have next to nothing of it to traverse (a list or array
        # per record made them cost more than the deduplication itself).
        self._records: dict[tuple, int] = {}
        self._rec_process = array("I")
        self._rec_stack = array("I")
        self._rec_link = array("I")
        self._rec_attrs: list[tuple[int, ...]] = []
        # One entry per occurrence: its record, value(s) and time.
        self._occ_record = array("I")
        self._occ_value = array("q")
        self._occ_time = array("Q")
        self._occ_more = [array("q") for _ in range(self._extra)]
        self._count = 0
        self.dropped_samples = 0

    def __len__(self) -> int:
        return self._count

    def add(self, s: Sample) -> None:
        self.add_all((s,))

    def add_all(self, samples: Iterable[Sample]) -> None:
        records = self._records
        get = records.get
        stack_of = self._stack_by_id.get
        process_of = self._process_by_id.get
        add_record = self._occ_record.append
        add_value = self._occ_value.append
        add_time = self._occ_time.append
        extra = self._occ_more
        room = self.max_samples - self._count
        added = 0
        for s in samples:
            if added >= room:
                self.dropped_samples += 1
                continue
            added += 1
            stack = stack_of(id(s.stack))
            if stack is None:
                stack = self._stack_index(s.stack)
            proc = process_of(id(s.process))
            if proc is None:
                proc = self._process_index(s.process)
            key = (proc, stack, s.tid, s.thread_name or s.comm, s.cpu, s.trace_id, s.span_id)
            rec = get(key)
            if rec is None:
                rec = records[key] = self._new_record(s, key)
            add_record(rec)
            try:
                add_value(s.value)
            except (OverflowError, TypeError):
                _append(self._occ_value, s.value, _I64)
            try:
                add_time(s.time_ns)
            except (OverflowError, TypeError):
                _append(self._occ_time, s.time_ns, _U64)
            if extra:
                more = s.more
                n = len(more)
                for k, column in enumerate(extra):
                    _append(column, more[k] if k < n else 0, _I64)
        self._count += added

    def _stack_index(self, stack: Stack) -> int:
        idx = self._stacks.get(stack)
        if idx is None:
            idx = self._stacks[stack] = self._stack_tuples(
                tuple(self.location_index(loc) for loc in stack.frames)
            )
        self._stack_by_id[id(stack)] = idx
        self._alive.append(stack)
        return idx

    def _process_index(self, proc: ProcessInfo) -> int:
        idx = self._process_no.get(proc)
        if idx is None:
            idx = self._process_no[proc] = len(self._process_list)
            self._process_list.append(proc)
        self._process_by_id[id(proc)] = idx
        self._alive.append(proc)
        return idx

    def _new_record(self, s: Sample, key: tuple) -> int:
        # One attribute index per tid, name and cpu: a thread's records on 96 CPUs share two.
        tid = self._tid_attr.get(s.tid)
        if tid is None:
            tid = self._tid_attr[s.tid] = self._attrs((ATTR_THREAD_ID, s.tid))
        name = self._name_attr.get(key[3])
        if name is None:
            name = self._name_attr[key[3]] = self._attrs((ATTR_THREAD_NAME, key[3]))
        cpu = self._cpu_attr.get(s.cpu)
        if cpu is None:
            cpu = self._cpu_attr[s.cpu] = self._attrs((ATTR_CPU, s.cpu))
        attrs = (tid, name, cpu)
        link = 0
        if s.trace_id:
            link = self._links((s.trace_id, s.span_id))
            if link == len(self._link_names):  # a new link: its name goes beside it
                self._link_names.append(s.span_name)
        self._rec_process.append(key[0])
        self._rec_stack.append(key[1])
        self._rec_link.append(link)
        self._rec_attrs.append(attrs)
        return len(self._rec_attrs) - 1

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

    def _records_by_process(self) -> list[tuple[ProcessInfo, Records]]:
        """Each process (in the order first seen) with its records (likewise), occurrences in
        arrival order; all of it a few sorts and copies at C speed, no object per record."""
        rec_process = self._rec_process
        n = len(rec_process)
        # Records renumbered process by process (stable: first seen first within each).
        rec_order = sorted(range(n), key=rec_process.__getitem__)
        rank = sorted(range(n), key=rec_order.__getitem__)  # old record number -> new
        occ_rank = array("I", map(rank.__getitem__, self._occ_record))
        order = sorted(range(len(occ_rank)), key=occ_rank.__getitem__)
        counts = Counter(occ_rank)
        cols = RecordColumns(
            stacks=array("I", map(self._rec_stack.__getitem__, rec_order)),
            attrs=list(map(self._rec_attrs.__getitem__, rec_order)),
            links=array("I", map(self._rec_link.__getitem__, rec_order)),
            offsets=array("I", accumulate(map(counts.__getitem__, range(n)), initial=0)),
            values=self._sorted_values(order),
            times=array("Q", map(self._occ_time.__getitem__, order)),
            more=[array("q", map(c.__getitem__, order)) for c in self._occ_more],
        )
        out = []
        at = 0
        per_process = Counter(rec_process)
        for p in sorted(per_process):
            end = at + per_process[p]
            out.append((self._process_list[p], Records(cols, at, end)))
            at = end
        return out

    def _sorted_values(self, order: list[int]) -> array:  # type: ignore[type-arg]
        values = self._occ_value
        if values.count(1) == len(values):  # CPU samples: all ones, in any order
            return array("q", [1]) * len(values)
        return array("q", map(values.__getitem__, order))

    def build(self, start_ns: int = 0, end_ns: int = 0) -> ProfileSet:
        """Return the window's (immutable) ProfileSet and start a fresh one.

        ``start_ns``/``end_ns`` widen the window (e.g. to the flush interval); sample times
        always lie inside the result's window.
        """
        groups = self._records_by_process()
        times = self._occ_time
        first = min(times) if times else 0
        if times and not first:  # time 0 means unknown (hand-made input): not a bound
            first = min((t for t in times if t), default=0)
        last = max(times) if times else 0
        start = min(x for x in (start_ns, first) if x) if (start_ns or first) else 0
        end = max(end_ns, last)
        for proc, _ in groups:
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
            processes=tuple(ProcessProfile(p, recs) for p, recs in groups),
            dropped_samples=self.dropped_samples,
        )
        self._reset()
        return ps
