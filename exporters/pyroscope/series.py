"""One window's ProfileSet -> the pprof profiles of each Pyroscope series, within its limits.

A series (one label set, usually one service) gets a ProfileSet of its own processes with
tables holding only what those processes reference: ``encode_pprof`` writes every table
entry it is given, so handing it the whole window's dictionary would repeat every other
service's functions and mappings in each series. The window's frozen tables are only read.

For Pyroscope the samples carry no thread, CPU or span labels: its distributor turns every
string sample label into a series label (a series per thread name or trace id); the encoder's
numeric ``pid`` label stays. Samples of a process are merged by stack instead, which also
keeps profiles under Pyroscope's sample limit. Stacks deeper than ``max_depth`` keep their
leaf side (where the time is spent) under one ``[truncated]`` root frame. A profile over
``max_bytes`` (uncompressed) or ``max_samples`` is split into several, each with its own
tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from collector.encoding import pprof_message
from collector.model import (
    Function,
    Line,
    Location,
    Mapping,
    ProcessInfo,
    ProcessProfile,
    ProfileSet,
)
from collector.model.profile import (
    ZERO_FUNCTION,
    ZERO_LOCATION,
    ZERO_MAPPING,
    Dictionary,
    SampleRecord,
)

TRUNCATED = Location(None, 0, (Line(Function("[truncated]")),))


@dataclass(slots=True)
class Stats:
    """What encoding one window did, for the exporter's counters."""

    truncated_samples: int = 0  # samples whose stack lost frames to max_depth
    split_profiles: int = 0  # extra profiles made because one was over a limit
    too_large_samples: int = 0  # samples of a single stack that alone is over max_bytes


@dataclass(slots=True)
class Piece:
    profile: bytes  # serialized perftools.profiles.Profile, uncompressed
    samples: int  # samples of the window it carries


# One process's samples merged by stack: stack index -> [samples, total of each value type].
Merged = tuple[ProcessInfo, dict[int, list[int]]]


@dataclass(slots=True)
class _Tables:
    d: Dictionary
    max_depth: int
    locations: list[Location] = field(default_factory=lambda: [ZERO_LOCATION])
    loc_ids: dict[int, int] = field(default_factory=dict)
    mappings: dict[Mapping, int] = field(default_factory=lambda: {ZERO_MAPPING: 0})
    functions: dict[Function, int] = field(default_factory=lambda: {ZERO_FUNCTION: 0})
    stacks: list[tuple[int, ...]] = field(default_factory=lambda: [()])
    stack_ids: dict[int, int] = field(default_factory=dict)
    truncated: int = 0

    def location(self, old: int) -> int:
        i = self.loc_ids.get(old)
        if i is None:
            loc = self.d.locations[old]
            if loc.mapping is not None:
                self.mappings.setdefault(loc.mapping, len(self.mappings))
            for ln in loc.lines:
                self.functions.setdefault(ln.function, len(self.functions))
            i = self.loc_ids[old] = len(self.locations)
            self.locations.append(loc)
        return i

    def stack(self, old: int, samples: int) -> int:
        i = self.stack_ids.get(old)
        if i is None:
            frames = self.d.stacks[old]
            if len(frames) > self.max_depth:
                self.truncated += samples
                new = (*(self.location(f) for f in frames[: self.max_depth - 1]), -1)
            else:
                new = tuple(self.location(f) for f in frames)
            i = self.stack_ids[old] = len(self.stacks)
            self.stacks.append(new)
        elif len(self.d.stacks[old]) > self.max_depth:
            self.truncated += samples
        return i

    def dictionary(self) -> Dictionary:
        locations = list(self.locations)
        stacks = self.stacks
        if any(s and s[-1] == -1 for s in stacks):
            for ln in TRUNCATED.lines:
                self.functions.setdefault(ln.function, len(self.functions))
            t = len(locations)
            locations.append(TRUNCATED)
            stacks = [(*s[:-1], t) if s and s[-1] == -1 else s for s in stacks]
        return Dictionary(
            strings=("",),  # the encoder adds every string it writes
            mappings=tuple(self.mappings),
            locations=tuple(locations),
            functions=tuple(self.functions),
            stacks=tuple(stacks),
        )


def merge(processes: Sequence[ProcessProfile], n_values: int = 1) -> list[Merged]:
    """Drop per-sample attributes and links; sum each process's samples by stack.

    Each stack's entry is [occurrences, total of value type 0, ..., of type n_values - 1]."""
    out: list[Merged] = []
    for pp in processes:
        by_stack: dict[int, list[int]] = {}
        for rec in pp.samples:
            acc = by_stack.get(rec.stack_index)
            if acc is None:
                acc = by_stack[rec.stack_index] = [0] * (n_values + 1)
            acc[0] += len(rec.values)
            for k in range(n_values):
                acc[k + 1] += sum(rec.column(k))
        out.append((pp.process, by_stack))
    return out


def subset(ps: ProfileSet, merged: Sequence[Merged], max_depth: int) -> tuple[ProfileSet, int]:
    """A ProfileSet of ``merged`` with compact tables; and the samples it truncated."""
    t = _Tables(ps.dictionary, max_depth)
    procs = []
    for proc, by_stack in merged:
        recs = tuple(
            SampleRecord(t.stack(si, acc[0]), (), 0, (acc[1],), more=tuple((v,) for v in acc[2:]))
            for si, acc in by_stack.items()
        )
        procs.append(ProcessProfile(proc, recs))
    sub = ProfileSet(ps.profile_type, ps.start_ns, ps.end_ns, t.dictionary(), tuple(procs))
    return sub, t.truncated


def _count(merged: Sequence[Merged]) -> tuple[int, int]:
    """(pprof samples, window samples) of ``merged``."""
    return (
        sum(len(b) for _, b in merged),
        sum(acc[0] for _, b in merged for acc in b.values()),
    )


def _chunks(merged: Sequence[Merged], parts: int) -> list[list[Merged]]:
    """Split into about ``parts`` groups of equal record counts, in order, cutting a
    process's stacks where needed."""
    items = [(proc, si, acc) for proc, b in merged for si, acc in b.items()]
    size = max(1, math.ceil(len(items) / parts))
    out: list[list[Merged]] = []
    for start in range(0, len(items), size):
        group: list[Merged] = []
        for proc, si, acc in items[start : start + size]:
            if not group or group[-1][0] is not proc:
                group.append((proc, {}))
            group[-1][1][si] = acc
        out.append(group)
    return out


def encode_series(
    ps: ProfileSet,
    processes: Sequence[ProcessProfile],
    *,
    max_bytes: int,
    max_samples: int,
    max_depth: int,
    stats: Stats,
) -> list[Piece]:
    """The pprof profiles of one series, each within ``max_bytes`` and ``max_samples``."""
    merged = merge(processes, len(ps.profile_type.value_types))
    pieces: list[Piece] = []
    todo = [merged]
    while todo:
        part = todo.pop()
        records, samples = _count(part)
        if records > max_samples:
            todo.extend(reversed(_chunks(part, math.ceil(records / max_samples))))
            continue
        sub, truncated = subset(ps, part, max_depth)
        body = pprof_message(sub)
        if len(body) > max_bytes:
            if records <= 1:
                stats.too_large_samples += samples
                continue
            # Tables shrink with the samples, so a part's size is roughly proportional.
            parts = max(2, math.ceil(len(body) * 1.2 / max_bytes))
            todo.extend(reversed(_chunks(part, min(parts, records))))
            continue
        stats.truncated_samples += truncated
        pieces.append(Piece(body, samples))
    stats.split_profiles += max(len(pieces) - 1, 0)
    return pieces
