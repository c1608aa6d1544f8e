"""The symbolizer against hostile binaries mapped by real processes.

Ground truth: the malformed copies are cpu_shares linked with -rdynamic, so burn_* are in
.dynsym (nm -D, another reader, gives their addresses); their runtime addresses come from the
process's own /proc/PID/maps and the program headers as pyelftools reads them.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from collector.model import RawBatch, RawSample, cpu_profile_type
from collector.proc import ProcessTable
from collector.telemetry import Counters
from processors.symbolize import SymbolizeConfig, Symbolizer
from tests.support import hostile_elf
from tests.support.workloads import build

BURNS = ("burn_a", "burn_b", "burn_c")


def _nm(path: Path, *flags: str) -> dict[str, int]:
    out = subprocess.run(
        ["nm", *flags, "--defined-only", str(path)], capture_output=True, text=True
    )
    return {
        p[2]: int(p[0], 16)
        for p in (ln.split() for ln in out.stdout.splitlines())
        if len(p) == 3 and p[1] in "Tt"
    }


def runtime_address(pid: int, path: Path, vaddr: int) -> int:
    """Where link-time ``vaddr`` of ``path`` is in process ``pid``."""
    with path.open("rb") as f:
        seg = next(
            s
            for s in ELFFile(f).iter_segments()
            if s["p_type"] == "PT_LOAD" and s["p_vaddr"] <= vaddr < s["p_vaddr"] + s["p_filesz"]
        )
        file_off = vaddr - seg["p_vaddr"] + seg["p_offset"]
    ino = path.stat().st_ino
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split()
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        off = int(parts[2], 16)
        if int(parts[4]) == ino and off <= file_off < off + hi - lo:
            return lo + file_off - off
    raise AssertionError(f"{path} offset {file_off:#x} not mapped in {pid}")


def _wait_mapped(pid: int, path: Path) -> None:
    for _ in range(500):
        try:
            if str(path) in Path(f"/proc/{pid}/maps").read_text():
                return
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"{path} never mapped in {pid}")


@pytest.fixture
def stopped() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started here are stopped once mapped (no CPU burnt) and killed at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def _start(procs: list[subprocess.Popen[bytes]], path: Path, *args: str) -> int:
    p = subprocess.Popen([str(path), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    procs.append(p)
    _wait_mapped(p.pid, path)
    os.kill(p.pid, signal.SIGSTOP)
    return p.pid


def _mapper(procs: list[subprocess.Popen[bytes]], path: Path) -> tuple[int, int]:
    """A process that maps ``path`` executable (as a loader would) and waits: (pid, start)."""
    code = (
        "import mmap,os,sys\n"
        f"fd=os.open({str(path)!r},os.O_RDONLY)\n"
        "m=mmap.mmap(fd,os.fstat(fd).st_size,prot=mmap.PROT_READ|mmap.PROT_EXEC)\n"
        "print('ok',flush=True)\nsys.stdin.read()\n"
    )
    p = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    procs.append(p)
    assert p.stdout is not None and p.stdout.readline().strip() == b"ok"
    for line in Path(f"/proc/{p.pid}/maps").read_text().splitlines():
        if line.endswith(str(path)):
            return p.pid, int(line.split("-")[0], 16)
    raise AssertionError("not mapped")


def _symbolizer(**cfg: object) -> tuple[Symbolizer, Counters]:
    counters = Counters()
    return Symbolizer(ProcessTable(counters), SymbolizeConfig(kernel=False, **cfg), counters), (
        counters
    )


def _batch(*samples: tuple[int, tuple[int, ...]]) -> RawBatch:
    now = time.time_ns()
    raw = [RawSample(pid, pid, 0, "t", now, 1, user, ()) for pid, user in samples]
    return RawBatch(cpu_profile_type(99), raw)


def test_malformed_binaries_are_named_from_dynsym_and_reported_once(
    tmp_path: Path, stopped: list[subprocess.Popen[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    exported = build("cpu_shares", ("-rdynamic",))
    truth = _nm(exported, "-D")
    normal = build("cpu_shares")
    samples = []
    pid = _start(stopped, normal, "30")
    samples.append((pid, (runtime_address(pid, normal, _nm(normal)["burn_a"]) + 1,)))
    # The original of the copies: same build id as every one of them, yet it keeps .symtab
    # names (static `now` is only there), since bad files are remembered by identity.
    pid = _start(stopped, exported, "30")
    samples.append((pid, (runtime_address(pid, exported, _nm(exported)["now"]) + 1,)))
    for kind in hostile_elf.KINDS:
        bad = hostile_elf.make(exported, tmp_path / f"hx_{kind}", kind)
        pid = _start(stopped, bad, "30")
        samples += [(pid, (runtime_address(pid, bad, truth[n]) + 1,)) for n in BURNS]
    sym, counters = _symbolizer()
    with caplog.at_level(logging.WARNING):
        out = sym.symbolize(_batch(*samples)).samples
        again = sym.symbolize(_batch(*samples)).samples
    assert len(out) == len(again) == len(samples)  # nobody lost a sample
    assert out[0].stack.frames[0].label() == "burn_a"
    original = out[1].stack.frames[0]
    assert original.label() == "now"
    hostile = [s.stack.frames[0] for s in out[2:]]
    assert [f.label() for f in hostile] == list(BURNS) * len(hostile_elf.KINDS)
    assert original.mapping is not None and len(original.mapping.build_id) == 40
    assert all(f.mapping and f.mapping.build_id == original.mapping.build_id for f in hostile)
    assert counters.get("symbolize", "binary_malformed") == len(hostile_elf.KINDS)
    lines = [r.getMessage() for r in caplog.records if "malformed binary" in r.getMessage()]
    assert len(lines) == len(hostile_elf.KINDS), lines  # once each, not once per batch
    assert any("hx_symtab1t" in m and ".symtab" in m and "outside the file" in m for m in lines)
    assert all("Traceback" not in (r.exc_text or "") for r in caplog.records)


def test_unparsable_mapping_stays_offsets_and_is_not_read_again(
    tmp_path: Path, stopped: list[subprocess.Popen[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x7fELF" + b"\xff" * 8188)  # ELF magic, impossible class
    other = tmp_path / "other.bin"
    other.write_bytes(b"#!" + b"\0" * 8190)
    pid, start = _mapper(stopped, junk)
    pid2, start2 = _mapper(stopped, other)
    sym, counters = _symbolizer(max_binaries=1)  # each binary evicts the other
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            a, b = sym.symbolize(_batch((pid, (start + 0x10,)), (pid2, (start2 + 0x20,)))).samples
            assert a.stack.frames[0].label() == "junk.bin+0x10"
            assert b.stack.frames[0].label() == "other.bin+0x20"
    # Three rounds, each binary evicting the other: each is counted and logged once. Not ELF
    # at all (a JIT region, a data file) is unreadable; ELF magic with garbage is malformed.
    assert counters.get("symbolize", "binary_malformed") == 1
    assert counters.get("symbolize", "binary_unreadable") == 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "malformed binary" in lines[0] and "unknown ELF class 255" in lines[0]
    assert "cannot read binary" in lines[1] and "not an ELF file" in lines[1]


def test_huge_binary_is_symbolized_within_its_budget(
    tmp_path: Path, stopped: list[subprocess.Popen[bytes]]
) -> None:
    path = tmp_path / "huge.so"
    truth = hostile_elf.synthetic(path, 200_000)
    pid, start = _mapper(stopped, path)
    base = 0x400000  # the synthetic file's only PT_LOAD: offset 0 at this address
    sym, counters = _symbolizer(binary_max_symbols=50_000)
    first, last = truth["f0"] - base + start, truth["f199999"] - base + start
    a, b = sym.symbolize(_batch((pid, (first + 2,)), (pid, (last + 2,)))).samples
    assert a.stack.frames[0].label() == "f0"
    assert b.stack.frames[0].label() == f"huge.so+{truth['f199999'] - base + 2:#x}"
    assert counters.get("symbolize", "binary_budget_exceeded") == 1
    assert counters.get("symbolize", "binary_malformed") == 0


def _patch_sibling_loop(src: Path, dst: Path) -> None:
    """Point the first subprogram's DW_AT_sibling at itself: a naive walk never ends."""
    data = bytearray(src.read_bytes())
    with src.open("rb") as f:
        elf = ELFFile(f)
        info_off = elf.get_section_by_name(".debug_info")["sh_offset"]
        for cu in elf.get_dwarf_info().iter_CUs():
            for die in cu.iter_DIEs():
                sib = die.attributes.get("DW_AT_sibling")
                if die.tag == "DW_TAG_subprogram" and sib and sib.form == "DW_FORM_ref4":
                    at = info_off + sib.offset
                    data[at : at + 4] = (die.offset - cu.cu_offset).to_bytes(4, "little")
                    dst.write_bytes(bytes(data))
                    dst.chmod(0o755)
                    return
    raise AssertionError("no DW_AT_sibling to patch")


def test_dwarf_sibling_loop_keeps_names_and_lines(
    tmp_path: Path, stopped: list[subprocess.Popen[bytes]]
) -> None:
    """symbolic never follows DW_AT_sibling (it walks DIEs in order), so a self-loop costs
    nothing: the function keeps its name and its line."""
    normal = build("cpu_shares")
    looped = tmp_path / "looped"
    _patch_sibling_loop(normal, looped)
    pid = _start(stopped, looped, "30")
    addr = runtime_address(pid, looped, _nm(normal)["burn_b"]) + 1
    sym, counters = _symbolizer(dwarf_lines=True, inline=True)
    [s] = sym.symbolize(_batch((pid, (addr,)))).samples
    assert s.stack.frames[0].label() == "burn_b"
    assert s.stack.frames[0].lines[-1].line > 0
    assert not [k for k in counters.snapshot().get("symbolize", {}) if k.startswith("dwarf_")]


def test_corrupt_dwarf_is_counted_logged_and_names_survive(
    tmp_path: Path, stopped: list[subprocess.Popen[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    """A compile unit claiming DWARF version 99: symbolic refuses the whole object; the
    refusal is counted by its kind and logged once, and the names from .symtab stay."""
    normal = build("cpu_shares")
    data = bytearray(normal.read_bytes())
    with normal.open("rb") as f:
        info = ELFFile(f).get_section_by_name(".debug_info")["sh_offset"]
    data[info + 4 : info + 6] = (99).to_bytes(2, "little")  # after the 4-byte unit_length
    bad = tmp_path / "badversion"
    bad.write_bytes(bytes(data))
    bad.chmod(0o755)
    pid = _start(stopped, bad, "30")
    addr = runtime_address(pid, bad, _nm(normal)["burn_b"]) + 1
    sym, counters = _symbolizer(dwarf_lines=True)
    with caplog.at_level(logging.WARNING):
        [s] = sym.symbolize(_batch((pid, (addr,)))).samples
        [t] = sym.symbolize(_batch((pid, (addr + 1,)))).samples
    assert s.stack.frames[0].label() == t.stack.frames[0].label() == "burn_b"
    assert s.stack.frames[0].lines[-1].line == 0
    assert counters.get("symbolize", "dwarf_bad_debug_file") == 1
    assert sum("bad DWARF" in r.getMessage() for r in caplog.records) == 1


def test_dwarf_claiming_a_terabyte_is_never_handed_to_symbolic(
    tmp_path: Path, stopped: list[subprocess.Popen[bytes]]
) -> None:
    normal = build("cpu_shares")
    data = bytearray(normal.read_bytes())
    with normal.open("rb") as f:
        elf = ELFFile(f)
        index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == ".debug_info")
        at = elf["e_shoff"] + index * elf["e_shentsize"] + 32  # sh_size
    data[at : at + 8] = hostile_elf.TIB.to_bytes(8, "little")
    bad = tmp_path / "bigdebug"
    bad.write_bytes(bytes(data))
    bad.chmod(0o755)
    pid = _start(stopped, bad, "30")
    addr = runtime_address(pid, bad, _nm(normal)["burn_c"]) + 1
    sym, counters = _symbolizer(dwarf_lines=True)
    [s] = sym.symbolize(_batch((pid, (addr,)))).samples
    assert s.stack.frames[0].label() == "burn_c"
    assert s.stack.frames[0].lines[-1].line == 0  # no DWARF line: it was refused
    assert counters.get("symbolize", "dwarf_skipped") == 1
