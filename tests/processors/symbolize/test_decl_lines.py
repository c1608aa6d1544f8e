"""Function.start_line from DW_AT_decl_line for real C, C++ and Rust binaries at -O0 and -O2.

Ground truth twice over: pyelftools (an independent reader, decl_truth.py) for every function
with code and every inlined call in the fixtures, and the source's DECL: markers for the
functions that matter (a method declared in its class, one defined outside it, a template, an
inlined C function from a header, Rust methods and generics).
"""

from __future__ import annotations

import os
import struct
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)

from collector.dwarf import DeclIndex
from collector.elf import ElfReader, load_function_symbols
from collector.model import ProfileBuilder, RawBatch, RawSample, cpu_profile_type
from collector.otlp import encode_profile_set
from collector.proc import PinnedFile, ProcessTable
from collector.telemetry import Counters
from processors.symbolize import Symbolizer
from processors.symbolize.binary import Binary
from processors.symbolize.config import SymbolizeConfig
from tests.processors.symbolize import decl_truth as dt

BUILDS = [(k, o) for k in ("c", "cc", "rs") for o in (0, 2)]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], Path]:
    out = tmp_path_factory.mktemp("decl")
    return {(k, o): dt.build(k, o, out) for k, o in BUILDS if dt.have(k) is None}


def _binary(path: Path, counts: dict[str, int], **cfg: object):  # type: ignore[no-untyped-def]
    fd = os.open(path, os.O_RDONLY)
    pinned = PinnedFile(fd, os.fstat(fd), str(path))

    def count(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    config = SymbolizeConfig(symcache_max_bytes=0, **cfg)
    return Binary(pinned, {}, config, count=count), pinned


def _offsets(path: Path):  # type: ignore[no-untyped-def]
    fd = os.open(path, os.O_RDONLY)
    try:
        elf = ElfReader(fd)
        table = load_function_symbols(elf).table
        return elf.vaddr_to_file_offset, {
            table.name_at(i): table.starts[i] for i in range(len(table))
        }
    finally:
        os.close(fd)


def _require(built: dict, kind: str, opt: int) -> Path:
    reason = dt.have(kind)
    if reason:
        pytest.skip(reason)
    return built[(kind, opt)]


@pytest.mark.parametrize(("kind", "opt"), BUILDS)
def test_every_function_and_inlined_call_matches_pyelftools(
    built: dict, kind: str, opt: int
) -> None:
    path = _require(built, kind, opt)
    truth = dt.Truth(path, dt.SOURCES[kind])
    to_offset, _symbols = _offsets(path)
    counts: dict[str, int] = {}
    b, pinned = _binary(path, counts)
    checked = inlined = 0
    try:
        for scope in truth.functions + truth.inlined:
            lo = scope.ranges[0][0]
            want = truth.chain(lo)
            lines = b.lines_at(to_offset(lo))
            if not lines or len(lines) != len(want):
                continue  # no symbol there (a function without one), or symbolic's own view
            got = [(ln.function.start_line, os.path.basename(ln.function.filename)) for ln in lines]
            assert got[::-1] == want, (hex(lo), [ln.function.name for ln in lines])
            checked += 1
            inlined += len(want) > 1
    finally:
        b.close()
        pinned.close()
    assert checked >= len(truth.functions) // 2, (checked, len(truth.functions))
    if opt == 2:
        assert inlined > 0  # -O2 inlines square, clamp, atoi, double and Rust's iterators
    assert counts.get("decl_units", 0) >= 1
    assert "decl_malformed" not in counts and "decl_budget_exceeded" not in counts, counts


SOURCE_TRUTH = {
    "c": {"weigh": "weigh", "accumulate": "accumulate", "main": "main"},
    "cc": {
        "_ZNK6shapes4Grid4cellEi": "Grid::cell",  # defined in its class: DW_AT_specification
        "_ZNK6shapes4Grid3sumEv": "Grid::sum",  # declared in its class, defined outside
        "_ZN6shapes6scaledIlEET_S1_S1_": "scaled",  # a template instance
        "main": "main",
    },
    "rs": {"_ZN4decl5Meter7measure": "measure", "_ZN4decl4fold": "fold", "_ZN4decl4main": "main"},
}
# inlined at -O2 (Grid::sum into main: abstract_origin to a DIE that has DW_AT_specification)
INLINED = {"c": "square", "cc": "Grid::sum", "rs": "double"}


@pytest.mark.parametrize(("kind", "opt"), BUILDS)
def test_start_lines_are_the_declarations_in_the_source(built: dict, kind: str, opt: int) -> None:
    path = _require(built, kind, opt)
    to_offset, symbols = _offsets(path)
    counts: dict[str, int] = {}
    b, pinned = _binary(path, counts)
    first_lines: dict[str, int] = {}
    try:
        for symbol, decl in SOURCE_TRUTH[kind].items():
            # gcc's clones (.isra.0, .constprop.0) and rustc's hashes (17h<16 hex>E) follow
            name = next(
                n for n in symbols if n == symbol or n.startswith((f"{symbol}.", f"{symbol}17h"))
            )
            lines = b.lines_at(to_offset(symbols[name]))
            assert lines, name
            fn = lines[-1].function
            assert fn.start_line == dt.marker(kind, decl), (name, fn)
            assert os.path.basename(fn.filename) == dt.SOURCES[kind]
            first_lines[symbol] = lines[-1].line
        if opt == 2:  # at each inlined call (found by pyelftools), the frame names its decl
            inlined = INLINED[kind]
            found = set()
            for scope in dt.Truth(path, dt.SOURCES[kind]).inlined:
                for ln in b.lines_at(to_offset(scope.ranges[0][0]) or 0)[:-1]:
                    if inlined in ln.function.name:
                        found.add(ln.function.start_line)
            assert found == {dt.marker(kind, inlined)}, found
    finally:
        b.close()
        pinned.close()
    # The change is visible: gcc puts some function's first instruction on another line than
    # its declaration (that line was start_line before); rustc's prologues are on the `fn` line.
    if kind != "rs":
        assert any(first_lines[s] != dt.marker(kind, d) for s, d in SOURCE_TRUTH[kind].items())


def _weigh(path: Path, counts: dict[str, int], **cfg: object):  # type: ignore[no-untyped-def]
    to_offset, symbols = _offsets(path)
    b, pinned = _binary(path, counts, **cfg)
    try:
        return b.lines_at(to_offset(symbols["weigh"]))
    finally:
        b.close()
        pinned.close()


def test_off_and_without_dwarf_the_old_start_lines(built: dict, tmp_path: Path) -> None:
    path = _require(built, "c", 2)
    counts: dict[str, int] = {}
    *_, on = _weigh(path, counts)
    *_, off = _weigh(path, counts, decl_lines=False)
    assert on.function.start_line == dt.marker("c", "weigh")
    assert off.function.start_line == off.line != on.function.start_line  # first instruction's
    stripped = tmp_path / "stripped"
    subprocess.run(["strip", "--strip-debug", str(path), "-o", str(stripped)], check=True)
    *_, bare = _weigh(stripped, counts)
    assert bare.function.name == "weigh" and bare.function.start_line == 0


def _patched(path: Path, out: Path, patch) -> Path:  # type: ignore[no-untyped-def]
    """A copy of ``path`` with bytes of its .debug_info changed by ``patch(data, info_offset)``
    (offsets from pyelftools, which reads the original)."""
    data = bytearray(path.read_bytes())
    with open(path, "rb") as f:
        elf = ELFFile(f)
        info = elf.get_section_by_name(".debug_info")
        patch(data, info["sh_offset"], elf.get_dwarf_info())
    out.write_bytes(bytes(data))
    return out


def test_hostile_dwarf_costs_decl_lines_only(built: dict, tmp_path: Path) -> None:
    path = _require(built, "c", 2)
    first_line = _weigh(path, {}, decl_lines=False)[-1].function.start_line

    def reserved_length(data: bytearray, at: int, _dwarf) -> None:  # type: ignore[no-untyped-def]
        struct.pack_into("<I", data, at, 0xFFFFFFF0)

    def self_origin(data: bytearray, at: int, dwarf) -> None:  # type: ignore[no-untyped-def]
        # every DW_AT_abstract_origin (ref4) points at its own DIE: origin loops forever
        for cu in dwarf.iter_CUs():
            for die in cu.iter_DIEs():
                attr = die.attributes.get("DW_AT_abstract_origin")
                if attr is not None and attr.form == "DW_FORM_ref4":
                    struct.pack_into("<I", data, at + attr.offset, die.offset - cu.cu_offset)
                line = die.attributes.get("DW_AT_decl_line")
                if (
                    die.tag == "DW_TAG_subprogram"
                    and line is not None
                    and line.form == "DW_FORM_data1"
                ):
                    data[at + line.offset] = 0  # and no decl line of their own

    def long_leb(data: bytearray, at: int, dwarf) -> None:  # type: ignore[no-untyped-def]
        cu = next(dwarf.iter_CUs())
        first = cu.get_top_DIE().offset + 0  # the root's abbreviation code
        end = cu.cu_offset + cu["unit_length"] + 4
        data[at + first : at + end] = b"\xff" * (end - first)  # a LEB128 that never ends

    cases = {"reserved": reserved_length, "loop": self_origin, "leb": long_leb}
    seen: Counter[str] = Counter()
    for name, patch in cases.items():
        hostile = _patched(path, tmp_path / name, patch)
        # the reader alone: refuses (counted) or finds no line, never raises
        seen.clear()
        fd = os.open(hostile, os.O_RDONLY)
        try:
            index = DeclIndex(ElfReader(fd), count=lambda n: seen.update((n,)))
            _to, symbols = _offsets(hostile)
            chain = index.chain(symbols["weigh"])
        finally:
            os.close(fd)
        if name == "loop":  # read, but no line anywhere on the (bounded) origin chain
            assert [line for line, _ in chain] == [0, 0], chain
            assert seen == {"decl_units": 1}, seen
        else:
            assert chain == () and seen == {"decl_malformed": 1}, (chain, seen)
        # the symbolizer: the name stays; the start line is the first instruction's (or 0
        # when symbolic refuses the DWARF too)
        counts = {}
        *_, last = _weigh(hostile, counts)
        assert last.function.name == "weigh", name
        assert last.function.start_line in (first_line, 0), (name, last, counts)


def test_time_budget_is_counted_and_falls_back(built: dict) -> None:
    path = _require(built, "cc", 2)
    counts: dict[str, int] = {}
    to_offset, symbols = _offsets(path)
    b, pinned = _binary(path, counts, decl_max_seconds=0.0)
    try:
        for name in ("main", "_ZNK6shapes4Grid3sumEv"):
            [*_, last] = b.lines_at(to_offset(symbols[name]))
            assert last.function.start_line == last.line  # the first instruction's line
    finally:
        b.close()
        pinned.close()
    assert counts.get("decl_budget_exceeded") == 1 and "decl_units" not in counts, counts


def test_otlp_functions_carry_decl_lines(built: dict) -> None:
    """A live -O2 C++ process through the symbolizer, the window and the OTLP encoder: the
    request's function table (parsed back from its bytes) has the decl lines of the source."""
    path = _require(built, "cc", 2)
    to_offset, symbols = _offsets(path)
    proc = subprocess.Popen([str(path), "100000000"], stdout=subprocess.DEVNULL)
    try:
        # Popen returns once the child forked, maybe before its exec: until then its maps are
        # python's (CI read them empty of the fixture once). A hang guard, not a bound.
        deadline = time.monotonic() + 30
        while str(path) not in Path(f"/proc/{proc.pid}/maps").read_text():
            assert time.monotonic() < deadline, "the fixture never mapped itself"
            time.sleep(0.01)
        table = ProcessTable(Counters())
        sym = Symbolizer(table, SymbolizeConfig(symcache_max_bytes=0), Counters())
        table.observe(proc.pid)
        maps = [
            ln.split()
            for ln in Path(f"/proc/{proc.pid}/maps").read_text().splitlines()
            if ln.endswith(str(path))
        ]
        want = {"_ZNK6shapes4Grid4cellEi": "Grid::cell", "_ZNK6shapes4Grid3sumEv": "Grid::sum"}
        raw = []
        for symbol in want:
            name = next(n for n in symbols if n == symbol or n.startswith(f"{symbol}."))
            off = to_offset(symbols[name] + 1)
            for start_end, _perms, map_off, *_ in maps:
                lo, hi = (int(x, 16) for x in start_end.split("-"))
                if int(map_off, 16) <= off < int(map_off, 16) + hi - lo:
                    addr = lo + off - int(map_off, 16)
                    raw.append(RawSample(proc.pid, proc.pid, 0, "decl", time.time_ns(), 1, (addr,)))
        assert len(raw) == len(want), maps
        batch = sym.symbolize(RawBatch(cpu_profile_type(99), raw))
        builder = ProfileBuilder(batch.profile_type)
        builder.add_all(batch.samples)
        req = ExportProfilesServiceRequest.FromString(
            encode_profile_set(builder.build()).SerializeToString()
        )
    finally:
        proc.kill()
        proc.wait()
    st = req.dictionary.string_table
    starts = {st[f.name_strindex]: f.start_line for f in req.dictionary.function_table}
    for decl, name in (
        ("Grid::cell", "shapes::Grid::cell(int) const"),
        ("Grid::sum", "shapes::Grid::sum() const"),
    ):
        found = [v for k, v in starts.items() if k.startswith(name)]  # clones: [clone .isra.0]
        assert found == [dt.marker("cc", decl)], (decl, starts)


def _libc_debug_file() -> Path | None:
    """libc's detached debug file (libc6-dbg, installed by `make test`), by build id."""
    fd = os.open("/lib/x86_64-linux-gnu/libc.so.6", os.O_RDONLY)
    try:
        build_id = ElfReader(fd).build_id()
    finally:
        os.close(fd)
    path = Path(f"/usr/lib/debug/.build-id/{build_id[:2]}/{build_id[2:]}.debug")
    return path if build_id and path.exists() else None


def test_evicted_units_take_their_abbreviation_tables_and_answers_stay() -> None:
    """With few units allowed, libc's debug file (one abbreviation table per unit, and no
    .debug_aranges for some: the root index parses every unit's table) keeps no more tables
    than units, and every answer equals an index that never evicts."""
    path = _libc_debug_file()
    if path is None:
        pytest.skip("libc6-dbg is not installed (make test installs it)")
    fd = os.open("/lib/x86_64-linux-gnu/libc.so.6", os.O_RDONLY)
    try:
        table = load_function_symbols(ElfReader(fd)).table
    finally:
        os.close(fd)
    addrs = [table.starts[i] + 2 for i in range(0, len(table), len(table) // 150)]
    dfd = os.open(path, os.O_RDONLY)
    try:
        small = DeclIndex(ElfReader(dfd), max_seconds=60, max_units=8)
        whole = DeclIndex(ElfReader(dfd), max_seconds=60, max_units=1 << 16)
        answers = 0
        for a in addrs:
            got = small.chain(a)
            assert got == whole.chain(a), hex(a)
            answers += bool(got)
            assert len(small._abbrevs) <= small.max_units + 1
        assert answers >= 0.9 * len(addrs)
        assert len(whole._abbrevs) > 100  # what was kept before tables went with units
    finally:
        os.close(dfd)
