"""The ELF reader against malformed copies of a real program that still run.

Ground truth: the workload is linked with -rdynamic, so nm -D (binutils, another reader) lists
burn_a/burn_b/burn_c in .dynsym; every malformation leaves the dynamic segment intact, so
each copy must still be named from there. A claimed 1 TiB must cost nothing.
"""

from __future__ import annotations

import os
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from collector.elf import ElfError, ElfReader, Limits, dynamic_symbols, load_function_symbols
from tests.support import hostile_elf
from tests.support.workloads import build

BURNS = {"burn_a", "burn_b", "burn_c"}


@pytest.fixture(scope="module")
def exported() -> Path:
    return build("cpu_shares", ("-rdynamic",))


def _names(table) -> set[str]:  # type: ignore[no-untyped-def]
    return {table.name_at(i) for i in range(len(table))}


def _open(path: Path, limits: Limits | None = None) -> ElfReader:
    return ElfReader(os.open(path, os.O_RDONLY | os.O_CLOEXEC), limits)


def _nm_dynamic(path: Path) -> dict[str, int]:
    out = subprocess.run(["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True)
    return {
        p[2]: int(p[0], 16)
        for p in (ln.split() for ln in out.stdout.splitlines())
        if len(p) == 3 and p[1] in "Tt"
    }


@pytest.mark.parametrize("kind", sorted(hostile_elf.KINDS))
def test_malformed_copy_runs_and_is_named_from_dynsym(
    exported: Path, tmp_path: Path, kind: str
) -> None:
    bad = hostile_elf.make(exported, tmp_path / kind, kind)
    # It is a program the kernel runs: the malformation is only in what the symbolizer reads.
    subprocess.run([str(bad), "0.01"], check=True, timeout=30)
    truth = _nm_dynamic(exported)
    assert truth.keys() >= BURNS
    tracemalloc.start()
    try:
        elf = _open(bad)
        loaded = load_function_symbols(elf)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elf.problems, "the malformation must be reported"
    assert loaded.source in (".dynsym", "PT_DYNAMIC")
    assert loaded.truncated == ""
    for name in BURNS:
        assert loaded.table.lookup(truth[name] + 1) == (name, truth[name])
    assert elf.bytes_read < 256 * 1024 and peak < 2 << 20, (elf.bytes_read, peak)


def test_binary_without_section_headers_is_named_through_pt_dynamic(
    exported: Path, tmp_path: Path
) -> None:
    """sstrip-ed binaries have no section headers at all: that is legal, not a problem."""
    data = bytearray(exported.read_bytes())
    data[0x28:0x30] = bytes(8)  # e_shoff
    data[0x3C:0x40] = bytes(4)  # e_shnum, e_shstrndx
    path = tmp_path / "sstripped"
    path.write_bytes(bytes(data))
    path.chmod(0o755)
    subprocess.run([str(path), "0.01"], check=True, timeout=30)
    elf = _open(path)
    loaded = load_function_symbols(elf)
    assert elf.section_list == [] and elf.problems == []
    assert loaded.source == "PT_DYNAMIC" and _names(loaded.table) >= BURNS
    assert len(elf.build_id()) == 40  # from PT_NOTE, no section needed


def test_claimed_terabyte_is_refused_before_reading(exported: Path, tmp_path: Path) -> None:
    bad = hostile_elf.make(exported, tmp_path / "t", "symtab1t")
    elf = _open(bad)
    load_function_symbols(elf)
    assert any(p.startswith(".symtab") and "outside the file" in p for p in elf.problems)
    with pytest.raises(ElfError, match="outside the file"):
        elf.read(0, hostile_elf.TIB)


def test_dynamic_segment_span_agrees_with_section_headers(exported: Path) -> None:
    elf = _open(exported)
    span = dynamic_symbols(elf)
    assert span is not None
    dynsym = elf.section(".dynsym")
    dynstr = elf.section(".dynstr")
    assert dynsym is not None and dynstr is not None
    assert (span.offset, span.count) == (dynsym.offset, dynsym.size // 24)
    assert (span.stroffset, span.strsize) == (dynstr.offset, dynstr.size)
    libc = _open(Path("/usr/lib/x86_64-linux-gnu/libc.so.6"))  # DT_GNU_HASH, symoffset > 0
    span = dynamic_symbols(libc)
    sec = libc.section(".dynsym")
    assert span is not None and sec is not None and span.count == sec.size // 24


def test_not_a_regular_file_is_never_read(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(ElfError, match="not a regular file"):
            ElfReader(fd)
    finally:
        os.close(fd)
    fd = os.open("/dev/zero", os.O_RDONLY)
    try:
        with pytest.raises(ElfError, match="not a regular file"):
            ElfReader(fd)
    finally:
        os.close(fd)


def test_file_that_shrinks_while_read_is_an_elf_error(exported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "shrinks"
    copy.write_bytes(exported.read_bytes())
    elf = _open(copy)  # fstat size taken here
    os.truncate(copy, 4096)  # then someone cuts the file: .symtab is gone, .dynsym is not
    loaded = load_function_symbols(elf)
    assert any(p.startswith(".symtab") and "changed size" in p for p in elf.problems)
    assert loaded.source == ".dynsym" and _names(loaded.table) >= BURNS


def test_huge_symbol_table_is_read_partially_within_budget(tmp_path: Path) -> None:
    path = tmp_path / "huge"
    truth = hostile_elf.synthetic(path, 300_000)
    nm = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    assert nm.count("\n") == 300_000  # binutils reads the same file
    loaded = load_function_symbols(_open(path, Limits(max_symbols=100_000)))
    assert len(loaded.table) == 99_999  # entry 0 is the null symbol
    assert "300001 symbols, read the first 100000" in loaded.truncated
    assert loaded.table.lookup(truth["f0"] + 3) == ("f0", truth["f0"])
    assert loaded.table.lookup(truth["f299999"]) is None  # beyond the budget: an offset
    whole = load_function_symbols(_open(path))
    assert whole.truncated == "" and len(whole.table) == 300_000
    assert whole.table.lookup(truth["f150000"] + 15) == ("f150000", truth["f150000"])
    # A read budget smaller than the tables: the string table is cut, names past it dropped.
    cut = load_function_symbols(_open(path, Limits(max_read_bytes=1 << 20)))
    assert cut.truncated and 0 < len(cut.table) < 300_000


def test_time_budget_stops_the_walk(tmp_path: Path) -> None:
    path = tmp_path / "huge"
    hostile_elf.synthetic(path, 50_000)
    ticks = iter(range(1000))
    # A clock that advances one second per look: the walk may read one chunk, then stops.
    loaded = load_function_symbols(
        _open(path, Limits(max_seconds=1.5)), clock=lambda: float(next(ticks))
    )
    assert "time budget" in loaded.truncated
    assert 0 < len(loaded.table) < 50_000


@pytest.mark.parametrize(
    ("offset", "value", "what"),
    [
        (0x36, b"\x07\x00", "program header entry size"),  # e_phentsize
        (0x38, b"\xff\xff", "program headers"),  # e_phnum: 65535
        (0x04, b"\x09", "unknown ELF class"),
    ],
)
def test_unusable_program_headers_are_fatal(
    exported: Path, tmp_path: Path, offset: int, value: bytes, what: str
) -> None:
    data = bytearray(exported.read_bytes())
    data[offset : offset + len(value)] = value
    path = tmp_path / "bad"
    path.write_bytes(bytes(data))
    with pytest.raises(ElfError, match=what):
        _open(path)


def test_oversized_build_id_note_is_dropped(exported: Path, tmp_path: Path) -> None:
    elf = _open(exported)
    note = elf.section(".note.gnu.build-id")
    assert note is not None and len(elf.build_id()) == 40
    data = bytearray(exported.read_bytes())
    data[note.offset + 4 : note.offset + 8] = (4000).to_bytes(4, "little")  # descsz
    path = tmp_path / "note"
    path.write_bytes(bytes(data))
    bad = _open(path)
    assert bad.build_id() != elf.build_id()
    assert any("runs past its segment" in p for p in bad.problems)


def test_no_binary_on_this_machine_is_flagged() -> None:
    """The checks must not cry wolf: every ELF file under /usr/bin and the system library
    folder (about 1,600 here, from many toolchains) reads without a single problem."""
    import stat

    checked, flagged = 0, {}
    for root in ("/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu"):
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                    if not stat.S_ISREG(st.st_mode) or st.st_size < 64:
                        continue
                    with open(path, "rb") as f:
                        if f.read(4) != b"\x7fELF":
                            continue
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    continue
                try:
                    elf = ElfReader(fd)
                    elf.build_id()
                    load_function_symbols(elf)
                    if elf.problems:
                        flagged[path] = elf.problems
                except ElfError as e:
                    flagged[path] = [str(e)]
                finally:
                    os.close(fd)
                checked += 1
    assert checked > 100
    assert flagged == {}


def test_offset_past_the_top_of_the_address_space_has_no_vaddr(tmp_path: Path) -> None:
    """A PT_LOAD whose p_vaddr is near 2^64 maps its later file offsets past the top of the
    address space: no process can have such an address (and symbolic refuses one wider than
    a u64 with OverflowError), so there is none."""
    path = tmp_path / "top"
    hostile_elf.synthetic(path, 4)
    top = (1 << 64) - 0x800
    with path.open("r+b") as f:
        f.seek(64 + 16)  # p_vaddr, p_paddr of the one program header
        f.write(top.to_bytes(8, "little") * 2)
    elf = _open(path)
    assert elf.file_offset_to_vaddr(0x10) == top + 0x10
    assert elf.file_offset_to_vaddr(0x7FF) == (1 << 64) - 1
    assert elf.file_offset_to_vaddr(0x800) is None
    assert elf.file_offset_to_vaddr(0x1000) is None
