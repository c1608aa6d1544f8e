"""collector.gosym on real Go builds of tests/workloads/go/pgohot from four toolchains (1.21,
1.24, 1.25, 1.27), stripped (-s -w) and not. The reference is independent of the code under
test: the unstripped build's DWARF read by symbolic (the symbolize processor's DWARF path),
its .symtab, and the source file's own line numbers."""

from __future__ import annotations

import re

import pytest

from collector.elf import ElfReader, Limits, load_function_symbols
from collector.gosym import GoBinary, GoSymError, read_build_info
from processors.symbolize.lines import LineTable, build_symcache, image_base
from tests.support import gotoolchains as gt

SOURCE = (gt.WORKLOADS / "pgohot" / "main.go").read_text()
VERSIONS = [gt.DEBIAN, gt.OLD, gt.MID, gt.NEW, gt.LATEST]


def source_line(pattern: str) -> int:
    for i, line in enumerate(SOURCE.splitlines(), 1):
        if re.search(pattern, line):
            return i
    raise AssertionError(pattern)


@pytest.fixture(scope="module", params=VERSIONS)
def builds(request: pytest.FixtureRequest) -> tuple[str, object, object]:
    v = request.param
    gt.require(v)
    return v, gt.workload("pgohot", v), gt.workload("pgohot", v, stripped=True)


def test_build_info_and_version(builds: tuple) -> None:
    v, full, stripped = builds
    for path in (full, stripped):
        with GoBinary.open(str(path)) as go:
            assert go.version == f"go{v}"
            assert go.module == "example.com/pgohot"
            # 0xfffffff0 up to 1.19, 0xfffffff1 from 1.20 on
            assert go.format == ("1.18" if v == gt.DEBIAN else "1.20")


def test_stripped_has_no_symbols_but_same_functions(builds: tuple) -> None:
    _v, full, stripped = builds
    with open(stripped, "rb") as f:
        elf = ElfReader(f.fileno())
        assert elf.section(".symtab") is None  # really stripped: names must come from pclntab
    with GoBinary.open(str(full)) as a, GoBinary.open(str(stripped)) as b:
        fa, fb = list(a.functions()), list(b.functions())
        assert len(fa) > 1000
        assert fa == fb
        assert a.gofunc is not None and a.gofunc == b.gofunc  # symtab vs moduledata agree
        assert a.table.text_start == b.table.text_start


def test_functions_match_the_symbol_table(builds: tuple) -> None:
    """Every pclntab function starts where .symtab says it does, with the same name."""
    _v, full, _s = builds
    with open(full, "rb") as f:
        syms = load_function_symbols(ElfReader(f.fileno())).table
    with GoBinary.open(str(full)) as go:
        checked = 0
        for fn in go.functions():
            hit = syms.lookup(fn.entry)
            if hit is None or hit[1] != fn.entry:
                continue  # assembly stubs without an ELF symbol of their own
            if "[...]" in fn.name:
                continue  # Go <= 1.19 elides array lengths of generated type.eq functions
            # The ELF name adds ".abi0" to assembly and writes the middle dot as "."; the
            # pclntab name is the runtime's (runtime.FuncForPC, Go's own profiles).
            assert hit[0].removesuffix(".abi0") == fn.name.replace("\u00b7", ".")
            checked += 1
        assert checked > 0.9 * len(go)


def test_start_lines_and_bounds(builds: tuple) -> None:
    v, _full, stripped = builds
    with GoBinary.open(str(stripped)) as go:
        by_name = {f.name: f for f in go.functions()}
        for name, pattern in (
            ("main.digest", r"^func digest"),
            ("main.hotLoop", r"^func hotLoop"),
            ("main.coldPath", r"^func coldPath"),
            ("main.(*fnv).Mix", r"^func \(f \*fnv\) Mix"),
        ):
            fn = by_name[name]
            # Go writes start lines from 1.20 on; the 1.18-1.19 table has none
            assert fn.start_line == (0 if v == gt.DEBIAN else source_line(pattern)), name
            assert fn.file.endswith("tests/workloads/go/pgohot/main.go")
            assert go.function(name) == (fn.entry, fn.end)
            assert fn.entry < fn.end
        assert go.function("main.nosuch") is None


def _dwarf(full: object) -> LineTable:
    f = open(full, "rb")  # noqa: SIM115  # kept open for the module's SymCache reader
    elf = ElfReader(f.fileno(), Limits(max_read_bytes=1 << 30))
    cache, blob = build_symcache(elf)
    return LineTable(cache, image_base(elf), len(blob))


def test_frames_match_dwarf_including_inlined(builds: tuple) -> None:
    """At every instruction start of the workload's functions, the stripped build's frames from
    pclntab equal the unstripped build's DWARF frames (names and lines, inlined first)."""
    _v, full, stripped = builds
    dwarf = _dwarf(full)
    inlined = 0
    compared = 0
    with GoBinary.open(str(stripped)) as go:
        for name in ("main.digest", "main.hotLoop", "main.coldPath", "main.main"):
            entry, end = go.function(name)
            for pc in range(entry, end):
                ours = [(f.function, f.line) for f in go.frames(pc)]
                theirs = [(n, line) for n, _file, line in dwarf.lookup(pc)]
                if not theirs:
                    continue
                assert ours == theirs, (name, hex(pc))
                compared += 1
                inlined += len(ours) > 1 and ours[0][0] == "main.rotate"
    assert compared > 200
    assert inlined > 10  # rotate is inlined into digest: its frames are seen


def test_frames_outside_any_function() -> None:
    gt.require(gt.NEW)
    with GoBinary.open(str(gt.workload("pgohot", gt.NEW, stripped=True))) as go:
        assert go.frames(0) == []
        assert go.frames(1 << 60) == []
        assert go.function_at(0) is None


def test_not_go(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GoSymError, match="not a Go binary"):
        GoBinary.open("/bin/true")
    with open("/bin/true", "rb") as f:
        assert read_build_info(ElfReader(f.fileno())) is None
