"""Several values per sample (a heap window: alloc_* and inuse_*) through every encoder.

Ground truth: ``work`` allocates 8 objects of 100 bytes (all freed), ``main`` allocates 2 of
4096 bytes that are still held at the window's end (the snapshot records them as in use).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from collector.encoding import encode_pprof, folded_totals, pprof_message
from collector.model import ProfileBuilder, ProfileSet, Stack
from collector.otlp.decode import decode_request
from collector.otlp.encode import encode_profile_set
from collector.otlp.validate import validate_request
from exporters.flamegraph.tree import build as build_tree
from exporters.pyroscope.series import Stats, encode_series
from tests.support.encoding_pprof import decode, go_pprof
from tests.support.encoding_samples import HEAP, L_MAIN, L_WORK_A, heap_sample

WORK = Stack((L_WORK_A, L_MAIN))
MAIN = Stack((L_MAIN,))


def heap_window() -> ProfileSet:
    b = ProfileBuilder(HEAP)
    for i in range(8):  # allocations during the window, all freed
        b.add(heap_sample(WORK, i, 1, (100, 0, 0)))
    for i in range(2):
        b.add(heap_sample(MAIN, 10 + i, 1, (4096,)))  # trailing values left out: they are 0
    b.add(heap_sample(MAIN, 20, 0, (0, 2, 8192)))  # the snapshot at the window's end
    return b.build()


def test_the_builder_keeps_one_column_per_value_type() -> None:
    ps = heap_window()
    by_stack = {ps.dictionary.stacks[r.stack_index]: r for r in ps.processes[0].samples}
    assert len(by_stack) == 2
    work = next(r for s, r in by_stack.items() if len(s) == 2)
    main = next(r for s, r in by_stack.items() if len(s) == 1)
    assert work.totals(4) == [8, 800, 0, 0]
    assert main.totals(4) == [2, 8192, 2, 8192]
    assert list(main.column(3)) == [0, 0, 8192]  # parallel to values and timestamps
    assert len(main.timestamps) == 3
    assert HEAP.default_index == 3 and HEAP.default_value_type == ("inuse_space", "bytes")


def test_pprof_carries_every_value_type_and_the_default(tmp_path: Path) -> None:
    ps = heap_window()
    p = decode(pprof_message(ps))
    types = [(p.string_table[t.type], p.string_table[t.unit]) for t in p.sample_type]
    assert types == list(HEAP.value_types)  # no derived period value for several values
    assert p.string_table[p.default_sample_type] == "inuse_space"
    values = sorted(tuple(s.value) for s in p.sample)
    assert values == [(2, 8192, 2, 8192), (8, 800, 0, 0)]
    path = tmp_path / "heap-1.pb.gz"
    path.write_bytes(encode_pprof(ps))
    inuse = go_pprof(path, "-top", "-sample_index=inuse_space")
    assert "8192" in inuse or "8kB" in inuse, inuse
    default = go_pprof(path, "-top")  # pprof's own default is default_sample_type
    assert "Type: inuse_space" in default, default
    objects = go_pprof(path, "-top", "-sample_index=alloc_objects")
    assert "Type: alloc_objects" in objects and " 8 " in objects, objects


def test_otlp_writes_one_profile_per_value_type_over_one_dictionary() -> None:
    req = encode_profile_set(heap_window())
    assert validate_request(req) == []
    d = req.dictionary
    (rp,) = req.resource_profiles
    (sp,) = rp.scope_profiles
    got = {}
    for prof in sp.profiles:
        key = d.string_table[prof.sample_type.type_strindex]
        got[key] = sorted(sum(s.values) for s in prof.samples)
    # A sample with no value of a type is left out of that type's profile.
    assert got == {
        "alloc_objects": [2, 8],
        "alloc_space": [800, 8192],
        "inuse_objects": [2],
        "inuse_space": [8192],
    }
    batches = decode_request(req)
    totals = {b.profile_type.sample_type: sum(s.value for s in b.samples) for b in batches}
    assert totals == {
        "alloc_objects": 10,
        "alloc_space": 8992,
        "inuse_objects": 2,
        "inuse_space": 8192,
    }


def test_folded_and_flame_graphs_show_the_default_value_type() -> None:
    ps = heap_window()
    assert folded_totals(ps) == {"app;main": 8192}  # work's freed bytes are not in use
    tree = build_tree(ps)
    assert tree.total == 8192


def test_pyroscope_series_keep_every_value_type() -> None:
    ps = heap_window()
    (piece,) = encode_series(
        ps, ps.processes, max_bytes=1 << 20, max_samples=1000, max_depth=64, stats=Stats()
    )
    p = decode(piece.profile)
    assert len(p.sample_type) == 4
    by_len = Counter()
    for s in p.sample:
        by_len[len(s.location_id)] = tuple(s.value)
    assert by_len == {2: (8, 800, 0, 0), 1: (2, 8192, 2, 8192)}
    assert piece.samples == 11
