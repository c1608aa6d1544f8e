"""collector.golang on real Go binaries of every toolchain: RETs against objdump, the goid
offset against DWARF, the same probe points in stripped and unstripped builds."""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from elftools.elf.elffile import ELFFile

from collector.elf.reader import ElfReader
from collector.golang import NotGo, UnsupportedGo, frame_push, read_go_binary, ret_addresses
from collector.golang.binary import goid_offset
from collector.golang.memrate import mem_profile_rate_address
from receivers.go_runtime.config import GoRuntimeConfig
from receivers.go_runtime.targets import CHAN_FUNCTIONS, CREATE_FUNCTIONS, probes_for
from tests.receivers.go_runtime import support
from tests.receivers.go_runtime.support import BUILDS
from tests.support import gotoolchains
from tests.support.workloads import build

SIGNALS = ["goroutines", "sched_latency", "gc", "alloc", "chan_block"]
NAMES = sorted(
    {rt for _fn, rt, _r in probes_for(SIGNALS) + probes_for(SIGNALS, "mallocgc")}
    | set(CHAN_FUNCTIONS)
    | set(CREATE_FUNCTIONS)
    | {"runtime.newproc1"}
)
VERSIONS = [v for v, _ in BUILDS[::2]]


def test_ret_addresses_of_hand_made_code() -> None:
    # push rbp; mov rbp,rsp; cmp rax,0; je +2; pop rbp; ret; pop rbp; ret; int3 padding
    code = bytes.fromhex("55 4889e5 4883f800 7402 5d c3 5d c3 cc cc cc".replace(" ", ""))
    got = ret_addresses(code, 0x1000)
    assert got.complete
    assert got.addresses == (0x100B, 0x100D)
    # a RET byte inside an instruction's immediate is not a RET: mov eax, 0xc3c3c3c3; ret
    got = ret_addresses(bytes.fromhex("b8c3c3c3c3c3"), 0x2000)
    assert got.addresses == (0x2005,)


def test_frame_push_of_hand_made_prologues() -> None:
    # cmp rsp,[r14+0x10]; jbe +0x40; push rbp; mov rbp,rsp
    split = bytes.fromhex("493b66107640554889e5")
    assert frame_push(split, 0x1000) == 0x1006
    # lea r12,[rsp-0x90]; cmp r12,[r14+0x10]; jbe; push rbp (a big frame's check)
    big = bytes.fromhex("4c8da42470ffffff4d3b66100f860001000055")
    assert frame_push(big, 0x2000) == 0x2012
    # no stack check (nosplit) and no push: the entry itself
    assert frame_push(bytes.fromhex("4889c3c3"), 0x3000) == 0x3000
    # a write to an argument register before the push: not a stack check, the entry
    assert frame_push(bytes.fromhex("488d430155"), 0x4000) == 0x4000


@pytest.mark.parametrize("version", VERSIONS)
def test_entry_probes_sit_on_the_frame_push(version: str) -> None:
    support.skip_unless_toolchain(version)
    path = support.fixture("fixture", version, True)
    b = read_go_binary(str(path), NAMES)
    for _fn, name, at_rets in probes_for(SIGNALS):
        if at_rets or name not in b.functions:
            continue
        fn = b.functions[name]
        at = fn.start + (b.entry(name) - fn.offset)  # type: ignore[operator]
        dump = subprocess.run(
            ["objdump", "-d", "--no-show-raw-insn", f"--start-address={at:#x}",
             f"--stop-address={at + 1:#x}", str(path)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert re.search(rf"^\s*{at:x}:\s+push\s+%rbp", dump, re.M), (name, dump)


@pytest.mark.parametrize("version", VERSIONS)
def test_rets_match_objdump(version: str) -> None:
    support.skip_unless_toolchain(version)
    path = support.fixture("fixture", version, False)
    b = read_go_binary(str(path), NAMES)
    for name in ("runtime.newproc1", "runtime.startTheWorldWithSema"):
        fn = b.functions[name]
        dump = subprocess.run(
            ["objdump", "-d", "--no-show-raw-insn", f"--start-address={fn.start:#x}",
             f"--stop-address={fn.start + fn.size:#x}", str(path)],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        truth = [int(m.group(1), 16) for m in re.finditer(r"^\s*([0-9a-f]+):\s+ret", dump, re.M)]
        assert truth, name
        assert [fn.start + (o - fn.offset) for o in b.returns(name)] == truth, name


@pytest.mark.parametrize("version", VERSIONS)
def test_goid_and_sched_offsets_match_dwarf(version: str) -> None:
    support.skip_unless_toolchain(version)
    path = support.fixture("fixture", version, False)
    members: dict[bytes, dict[bytes, int]] = {}
    with open(path, "rb") as f:
        dwarf = ELFFile(f).get_dwarf_info()
        for cu in dwarf.iter_CUs():
            for die in cu.iter_DIEs():
                name = die.attributes.get("DW_AT_name")
                if (
                    die.tag == "DW_TAG_structure_type"
                    and name
                    and name.value
                    in (
                        b"runtime.g",
                        b"runtime.gobuf",
                    )
                ):
                    members[name.value] = {
                        m.attributes["DW_AT_name"].value: m.attributes[
                            "DW_AT_data_member_location"
                        ].value
                        for m in die.iter_children()
                        if "DW_AT_data_member_location" in m.attributes
                    }
            if len(members) == 2:
                break
    g, gobuf = members[b"runtime.g"], members[b"runtime.gobuf"]
    b = read_go_binary(str(path), NAMES)
    assert b.goid_offset == g[b"goid"] == goid_offset(b.major_minor)
    # goroutines_live reads the status right before the goid (receivers/go_runtime/profiles.py)
    assert g[b"atomicstatus"] == g[b"goid"] - 8
    assert b.sched_offsets == (g[b"sched"] + gobuf[b"pc"], g[b"sched"] + gobuf[b"bp"])


@pytest.mark.parametrize("version", VERSIONS)
def test_stripped_build_has_the_same_probe_points(version: str) -> None:
    support.skip_unless_toolchain(version)
    plain = read_go_binary(str(support.fixture("fixture", version, False)), NAMES)
    stripped = read_go_binary(str(support.fixture("fixture", version, True)), NAMES)
    assert plain.version == stripped.version == f"go{version}"
    assert {n: (f.start, f.size) for n, f in plain.functions.items()} == {
        n: (f.start, f.size) for n, f in stripped.functions.items()
    }
    assert {"runtime.newproc", "runtime.gopark", "runtime.mallocgc"} <= set(plain.functions)
    # and the symbol table agrees with the line table on where each function starts
    nm = subprocess.run(["nm", str(support.fixture("fixture", version, False))],
                        capture_output=True, text=True, check=True).stdout  # fmt: skip
    starts = {ln.split()[2]: int(ln.split()[0], 16) for ln in nm.splitlines()
              if ln.split()[1:2] in (["T"], ["t"])}  # fmt: skip
    assert all(starts[n] == f.start for n, f in plain.functions.items())
    if version == gotoolchains.LATEST:  # Go 1.27: compiled code calls these, not mallocgc
        assert any("SC" in n for n in plain.functions)


def test_not_go_and_unsupported() -> None:
    with pytest.raises(NotGo):
        read_go_binary(str(build("cpu_shares")), NAMES)


def test_config_needs_a_target() -> None:
    with pytest.raises(ValueError, match="set pids or binary"):
        GoRuntimeConfig()
    with pytest.raises(ValueError):
        GoRuntimeConfig(pids=[1], signals=["gc", "heap"])  # type: ignore[list-item]
    assert GoRuntimeConfig(binary="/bin/x").signals == SIGNALS
    assert GoRuntimeConfig(binary="/bin/x").alloc_sampling == "auto"
    with pytest.raises(ValueError, match="alloc_sampling"):
        GoRuntimeConfig(binary="/bin/x", alloc_sampling="every")  # type: ignore[arg-type]
    assert UnsupportedGo  # the error the receiver logs for a Go binary it cannot probe


@pytest.mark.parametrize("version", VERSIONS)
def test_mem_profile_rate_address_matches_the_symbol_table(version: str) -> None:
    """runtime.MemProfileRate, found in profilealloc's code, is the data symbol's address;
    in the stripped build (no symbols, laid out differently) it holds the initial 512 KiB."""
    support.skip_unless_toolchain(version)
    plain_path = support.fixture("fixture", version, False)
    nm = subprocess.run(["nm", str(plain_path)], capture_output=True, text=True, check=True)
    symbols = {ln.split()[2]: int(ln.split()[0], 16) for ln in nm.stdout.splitlines()
               if len(ln.split()) == 3}  # fmt: skip
    plain = read_go_binary(str(plain_path), NAMES)
    stripped = read_go_binary(str(support.fixture("fixture", version, True)), NAMES)
    assert plain.mem_profile_rate == symbols["runtime.MemProfileRate"] != 0
    for b in (plain, stripped):
        fd = os.open(b.path, os.O_RDONLY)
        try:
            offset = ElfReader(fd).vaddr_to_file_offset(b.mem_profile_rate)
            assert offset is not None
            assert int.from_bytes(os.pread(fd, 8, offset), "little") == 512 * 1024
        finally:
            os.close(fd)


@pytest.mark.parametrize("version", VERSIONS)
def test_memory_profiling_is_known_from_the_linker_flag(version: str) -> None:
    """The linker disables memory profiling in a program that cannot read a heap profile
    (fixture.go: then the runtime never samples) and leaves it on with runtime/pprof linked
    (heapcheck.go); stripped builds tell the same."""
    support.skip_unless_toolchain(version)
    for name, profiling in (("fixture", False), ("heapcheck", True)):
        for stripped in (False, True):
            b = read_go_binary(str(support.fixture(name, version, stripped)), NAMES)
            assert b.memory_profiling is profiling, (name, stripped)


def test_mem_profile_rate_address_of_hand_made_code() -> None:
    # mov rdx,[rip+0x10]; test rdx,rdx; je; mov rax,[rip+0x20]; cmp rax,1: the second load
    code = bytes.fromhex("488b1510000000 4885d2 7406 488b0520000000 4883f801".replace(" ", ""))
    assert mem_profile_rate_address(code, 0x1000) == 0x1000 + 12 + 7 + 0x20
    # nothing compared with 1: unknown (the receiver then assumes the default rate)
    assert mem_profile_rate_address(bytes.fromhex("488b1510000000c3"), 0x1000) is None
