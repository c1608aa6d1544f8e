"""collector.golang on real Go binaries of every toolchain: RETs against objdump, the goid
offset against DWARF, the same probe points in stripped and unstripped builds."""

from __future__ import annotations

import re
import subprocess

import pytest
from elftools.elf.elffile import ELFFile

from collector.golang import NotGo, UnsupportedGo, read_go_binary, ret_addresses
from collector.golang.binary import goid_offset
from receivers.go_runtime.config import GoRuntimeConfig
from receivers.go_runtime.targets import CHAN_FUNCTIONS, probes_for
from tests.receivers.go_runtime import support
from tests.receivers.go_runtime.support import BUILDS
from tests.support import gotoolchains
from tests.support.workloads import build

SIGNALS = ["goroutines", "sched_latency", "gc", "alloc", "chan_block"]
NAMES = sorted({rt for _fn, rt, _r in probes_for(SIGNALS)} | set(CHAN_FUNCTIONS))
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
def test_goid_offset_matches_dwarf(version: str) -> None:
    support.skip_unless_toolchain(version)
    path = support.fixture("fixture", version, False)
    with open(path, "rb") as f:
        dwarf = ELFFile(f).get_dwarf_info()
        offset = None
        for cu in dwarf.iter_CUs():
            for die in cu.iter_DIEs():
                name = die.attributes.get("DW_AT_name")
                if die.tag == "DW_TAG_structure_type" and name and name.value == b"runtime.g":
                    for m in die.iter_children():
                        if m.attributes["DW_AT_name"].value == b"goid":
                            offset = m.attributes["DW_AT_data_member_location"].value
                    break
            if offset is not None:
                break
    b = read_go_binary(str(path), NAMES)
    assert b.goid_offset == offset == goid_offset(b.major_minor)


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
    starts = {ln.split()[2]: int(ln.split()[0], 16) for ln in nm.splitlines() if " T " in ln}
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
    assert UnsupportedGo  # the error the receiver logs for a Go binary it cannot probe
