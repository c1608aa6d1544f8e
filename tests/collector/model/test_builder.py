"""The builder's flat window state against an independent count of the same samples."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from collector.model import (
    Function,
    Line,
    Location,
    Mapping,
    ProcessInfo,
    ProfileBuilder,
    ProfileSet,
    ProfileType,
    Sample,
    Stack,
    cpu_profile_type,
)
from collector.model.profile import ATTR_CPU, ATTR_THREAD_ID, ATTR_THREAD_NAME

CPU = cpu_profile_type(99)
APP = Mapping(0x400000, 0x500000, 0, "/usr/bin/app")
T0 = 1_763_800_000_000_000_000


def _stack(i: int) -> Stack:
    """A fresh (not interned) Stack object for stack number ``i``."""
    fn = Function(f"fn_{i}")
    return Stack((Location(APP, 0x400000 + 16 * i, (Line(fn, i),)), Location(APP, 0x401000)))


def _key(ps: ProfileSet) -> dict[tuple, list[tuple[int, int]]]:
    """(pid, leaf name, tid, comm, cpu, trace) -> [(time, value)] as the ProfileSet says."""
    d = ps.dictionary
    out: dict[tuple, list[tuple[int, int]]] = {}
    for pp in ps.processes:
        for rec in pp.samples:
            leaf = d.locations[d.stacks[rec.stack_index][0]].label()
            attrs = dict(d.attributes[a] for a in rec.attribute_indices)
            key = (
                pp.process.pid,
                leaf,
                attrs[ATTR_THREAD_ID],
                attrs[ATTR_THREAD_NAME],
                attrs[ATTR_CPU],
                d.links[rec.link_index][0],
            )
            assert key not in out, f"two records for {key}"
            assert len(rec.values) == len(rec.timestamps)
            out[key] = list(zip(rec.timestamps, rec.values, strict=True))
    return out


def test_records_equal_an_independent_count_with_every_time_and_value() -> None:
    rnd = random.Random(3)
    procs = [ProcessInfo(100 + i, f"p{i}", f"/bin/p{i}") for i in range(20)]
    want: dict[tuple, list[tuple[int, int]]] = defaultdict(list)
    b = ProfileBuilder(CPU)
    batch: list[Sample] = []
    seen: list[Sample] = []
    for k in range(20_000):
        i = rnd.randrange(20)
        si = rnd.randrange(5)
        tid = procs[i].pid + rnd.randrange(2)
        cpu = rnd.randrange(8)
        trace = bytes([1 + rnd.randrange(2)]) * 16 if rnd.random() < 0.2 else b""
        value = rnd.randrange(1, 1000)
        t = T0 + k * 1000
        # Equal processes and stacks as distinct objects: they must still meet in one record.
        proc = ProcessInfo(procs[i].pid, procs[i].executable_name, procs[i].executable_path)
        span = bytes(8) if trace else b""
        batch.append(Sample(_stack(si), proc, tid, cpu, "w", t, value, trace, span))
        want[(proc.pid, f"fn_{si}", tid, "w", cpu, trace or bytes(16))].append((t, value))
        if k < 2000:
            seen.append(batch[-1])
        if len(batch) == 500:
            b.add_all(batch)
            batch = []  # the Sample objects (and their stacks) may now be freed
    ps = b.build()
    assert ps.sample_count == 20_000
    assert _key(ps) == dict(want)
    assert (ps.start_ns, ps.end_ns) == (T0, T0 + 19_999 * 1000)
    # Tables hold each distinct entry once, although every sample brought its own objects.
    assert len(ps.dictionary.stacks) == 1 + 5
    assert len(ps.dictionary.functions) == 1 + 5
    assert [pp.process.pid for pp in ps.processes] == list(
        dict.fromkeys(s.process.pid for s in seen)
    )


def test_temporary_stacks_never_alias_by_identity() -> None:
    """Stacks made and dropped one at a time (their memory, and so their id, reused at once
    unless the builder keeps them): each sample keeps its own stack."""
    b = ProfileBuilder(CPU)
    proc = ProcessInfo(7, "p")
    for i in range(300):
        b.add(Sample(_stack(i), proc, 7, 0, "p", T0 + i, 1))
    got = _key(b.build())
    assert sorted(k[1] for k in got) == sorted(f"fn_{i}" for i in range(300))


def test_values_past_int64_saturate_instead_of_being_lost() -> None:
    b = ProfileBuilder(ProfileType("off_cpu", "off_cpu", "nanoseconds"))
    proc = ProcessInfo(7, "p")
    b.add(Sample(_stack(0), proc, 7, 0, "p", T0, 1 << 70))
    b.add(Sample(_stack(0), proc, 7, 0, "p", T0 + 1, -(1 << 70)))
    b.add(Sample(_stack(0), proc, 7, 0, "p", 1 << 65, 5))
    (rec,) = b.build().processes[0].samples
    assert list(rec.values) == [(1 << 63) - 1, -(1 << 63), 5]
    assert list(rec.timestamps) == [T0, T0 + 1, (1 << 64) - 1]


def test_full_builder_counts_what_it_refuses() -> None:
    b = ProfileBuilder(CPU, max_samples=10)
    proc = ProcessInfo(7, "p")
    b.add_all(Sample(_stack(i % 3), proc, 7, 0, "p", T0 + i, 1) for i in range(25))
    assert len(b) == 10
    ps = b.build()
    assert (ps.sample_count, ps.dropped_samples) == (10, 15)
    assert len(b) == 0 and b.dropped_samples == 0  # the next window starts empty


def test_records_behave_as_a_read_only_sequence() -> None:
    b = ProfileBuilder(CPU)
    proc = ProcessInfo(7, "p")
    for i in range(30):
        b.add(Sample(_stack(i % 4), proc, 7, (i // 4) % 2, "p", T0 + i, 1))
    recs = b.build().processes[0].samples
    as_tuple = tuple(recs)
    assert len(recs) == len(as_tuple) == 8
    assert recs[0] == as_tuple[0] and recs[-1] == as_tuple[-1]
    assert tuple(recs[2:5]) == as_tuple[2:5]
    assert recs == as_tuple
    assert Counter(len(r.values) for r in recs) == Counter({4: 6, 3: 2})
    assert sum(r.total for r in recs) == 30
