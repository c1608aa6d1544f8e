"""pprof output read back by the protobuf runtime and by the real `go tool pprof`."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from collector.encoding import encode_pprof, folded_totals
from tests.support.encoding_pprof import decode, go_pprof
from tests.support.encoding_samples import CPU, OFF_CPU, STACKS, T0, profile_set


def _strings(p, *indices: int) -> list[str]:
    return [p.string_table[i] for i in indices]


def _folded_function_totals(totals: dict[str, int]) -> tuple[Counter, Counter]:
    """Flat and cum per function from folded lines (root = process, not a function);
    unresolved frames `lib+0xoff` are named `[lib]` as pprof names them."""
    flat: Counter = Counter()
    cum: Counter = Counter()
    for line, value in totals.items():
        frames = [re.sub(r"^(.+)\+0x[0-9a-f]+$", r"[\1]", f) for f in line.split(";")[1:]]
        flat[frames[-1]] += value
        for f in set(frames):
            cum[f] += value
    return flat, cum


def _pprof_top(path: Path, sample_index: str) -> tuple[Counter, Counter]:
    out = go_pprof(path, "-top", "-nodecount=1000", f"-sample_index={sample_index}", "-unit=ns")
    flat: Counter = Counter()
    cum: Counter = Counter()
    row = re.compile(
        r"^\s*(\d+)(?:ns)?\s+\S+%\s+\S+%\s+(\d+)(?:ns)?\s+\S+%\s+(.+?)(?: \(inline\))?$"
    )
    for line in out.splitlines():
        m = row.match(line)
        if m:
            flat[m.group(3)] += int(m.group(1))
            cum[m.group(3)] += int(m.group(2))
    assert cum, out
    return +flat, +cum


@pytest.mark.parametrize(("ptype", "index", "value"), [(CPU, "samples", 1), (OFF_CPU, "0", 777)])
def test_go_pprof_function_totals_equal_folded_totals(tmp_path: Path, ptype, index, value) -> None:
    path = tmp_path / "p.pb.gz"
    path.write_bytes(encode_pprof(profile_set(ptype, scale=3, value=value)))
    expected = _folded_function_totals(folded_totals(profile_set(ptype, scale=3, value=value)))
    assert _pprof_top(path, index) == expected


def test_go_pprof_traces_carry_pid_tid_comm_labels(tmp_path: Path) -> None:
    path = tmp_path / "p.pb.gz"
    path.write_bytes(encode_pprof(profile_set()))
    out = go_pprof(path, "-traces", "-sample_index=samples")
    got: Counter = Counter()
    for block in out.split("-----------+")[1:]:
        labels = dict(re.findall(r"^\s+(\w+):\s+(\S+)$", block, re.M))
        lines = [ln.strip() for ln in block.splitlines()[1:] if ln.strip()]
        frames = [ln for ln in lines if not re.match(r"^\w+:\s", ln)]
        if not frames:
            continue
        count, leaf = frames[0].split(None, 1)
        names = [leaf, *frames[1:]]
        key = (int(labels["pid"]), int(labels["tid"]), labels["comm"], tuple(names))
        got[key] += int(count)
    want: Counter = Counter()
    for proc, tid, comm, locs, count in STACKS:
        names = [n for loc in locs for n in _pprof_names(loc)]
        want[(proc.pid, tid, comm, tuple(names))] += count
    assert got == want


def _pprof_names(loc) -> list[str]:
    """How pprof prints one location, leaf first: inlined functions marked, `[lib]` if bare."""
    if not loc.lines:
        return [f"[{loc.mapping.filename.rsplit('/', 1)[-1]}]"]
    n = len(loc.lines)
    return [ln.function.name + (" (inline)" if i < n - 1 else "") for i, ln in enumerate(loc.lines)]


def test_go_pprof_reads_types_period_and_comments(tmp_path: Path) -> None:
    cpu = tmp_path / "cpu.pb.gz"
    cpu.write_bytes(encode_pprof(profile_set()))
    raw = go_pprof(cpu, "-raw")
    assert "PeriodType: cpu nanoseconds" in raw
    assert f"Period: {CPU.period}" in raw
    assert "samples/count cpu/nanoseconds" in raw
    off = tmp_path / "off.pb.gz"
    off.write_bytes(encode_pprof(profile_set(OFF_CPU, value=5)))
    top = go_pprof(off, "-top")
    assert "Type: off_cpu" in top
    assert "blocked time, not on CPU" in top


def test_tables_are_the_dictionary_with_unique_entries_and_consistent_ids() -> None:
    ps = profile_set(CPU, scale=2)
    d = ps.dictionary
    p = decode(encode_pprof(ps))
    st = list(p.string_table)
    assert st[0] == "" and tuple(st[: len(d.strings)]) == d.strings
    assert len(st) == len(set(st))
    assert [m.id for m in p.mapping] == list(range(1, len(d.mappings)))
    assert [f.id for f in p.function] == list(range(1, len(d.functions)))
    assert [loc.id for loc in p.location] == list(range(1, len(d.locations)))
    for f in p.function:
        model = d.functions[f.id]
        assert _strings(p, f.name, f.system_name, f.filename) == [
            model.name,
            model.system_name,
            model.filename,
        ]
    functions = {f.id: st[f.name] for f in p.function}
    mappings = {m.id for m in p.mapping}
    for loc in p.location:
        model = d.locations[loc.id]
        assert loc.address == model.address
        assert loc.mapping_id in mappings
        assert [functions[ln.function_id] for ln in loc.line] == [
            ln.function.name for ln in model.lines
        ]
    keys = {
        (tuple(s.location_id), tuple(sorted((st[x.key], x.num, x.str) for x in s.label)))
        for s in p.sample
    }
    assert len(keys) == len(p.sample)  # one pprof sample per model record, none repeated
    for s in p.sample:
        assert all(0 < i < len(d.locations) for i in s.location_id)
        assert s.value[1] == s.value[0] * CPU.period
    assert sum(s.value[0] for s in p.sample) == ps.sample_count
    assert p.time_nanos == ps.start_ns >= T0
    assert p.duration_nanos == ps.end_ns - ps.start_ns > 0
    assert _strings(p, p.period_type.type, p.period_type.unit) == ["cpu", "nanoseconds"]


def test_mapping_flags_are_honest() -> None:
    p = decode(encode_pprof(profile_set()))
    flags = {
        p.string_table[m.filename]: (
            m.has_functions,
            m.has_filenames,
            m.has_line_numbers,
            m.has_inline_frames,
        )
        for m in p.mapping
    }
    assert flags == {
        "/usr/bin/app": (True, True, True, True),
        "[kernel.kallsyms]": (True, False, False, False),
        "/usr/lib/libc.so.6": (False, False, False, False),  # holds an unresolved frame
    }


def test_pid_zero_and_cpu_zero_labels_are_kept(tmp_path: Path) -> None:
    p = decode(encode_pprof(profile_set()))
    cpus = {x.num for s in p.sample for x in s.label if p.string_table[x.key] == "cpu"}
    assert cpus == {0, 1}
    assert all(len(s.label) == 4 for s in p.sample)
    # go tool pprof drops a numeric label whose value and unit are both 0: cpu 0 must survive.
    path = tmp_path / "p.pb.gz"
    path.write_bytes(encode_pprof(profile_set(CPU, scale=2)))
    tags = go_pprof(path, "-tags", "-sample_index=samples")
    cpu = tags.split(" cpu: ", 1)[1].split("\n\n", 1)[0]
    cpu_totals = {
        int(m.group(2)): int(m.group(1))
        for m in re.finditer(r"^\s+(\d+) \(.*\): (\d+)$", cpu, re.M)
    }
    assert cpu_totals == {0: 15, 1: 15}, tags
    focused = go_pprof(path, "-top", "-tagfocus=cpu=0", "-sample_index=samples")
    assert "accounting for 15, 50.00% of 30 total" in focused, focused
