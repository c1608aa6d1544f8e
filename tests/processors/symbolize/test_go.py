"""The symbolizer on a live Go process (pgohot, stripped and not, three toolchains), no BPF:
addresses taken from the running image's own code are named from .gopclntab, tagged go (and
profile.frame.type=go in OTLP), with lines, start lines and inlined frames, the same for the
stripped build."""

from __future__ import annotations

import subprocess
import time

import pytest

from collector.gosym import GoBinary
from collector.model import FRAME_GO, ProfileBuilder, RawBatch, RawSample, cpu_profile_type
from collector.otlp.encode import encode_profile_set
from collector.proc import ProcessTable
from collector.telemetry import Counters
from processors.symbolize import SymbolizeConfig, Symbolizer
from tests.support import gotoolchains as gt

SOURCE = (gt.WORKLOADS / "pgohot" / "main.go").read_text().splitlines()


def _line(text: str) -> int:
    return next(i for i, s in enumerate(SOURCE, 1) if s.strip().startswith(text))


def _otlp_frame_types(samples: list) -> set[str]:  # type: ignore[type-arg]
    """profile.frame.type of every location in the OTLP encoding of these samples."""
    b = ProfileBuilder(cpu_profile_type(99))
    b.add_all(samples)
    d = encode_profile_set(b.build()).dictionary
    strings = list(d.string_table)
    out = set()
    for loc in d.location_table:
        for i in loc.attribute_indices:
            kv = d.attribute_table[i]
            if strings[kv.key_strindex] == "profile.frame.type":
                out.add(kv.value.string_value)
    return out


def _frames(binary: str) -> list[list[tuple[str, int, int, str]]]:
    with GoBinary.open(binary) as go:
        d_entry, d_end = go.function("main.digest")
        # an address inside digest where rotate is inlined, and hotLoop's call of digest
        inl = next(pc for pc in range(d_entry, d_end) if go.frames(pc)[0].function == "main.rotate")
        h_entry, h_end = go.function("main.hotLoop")
        ret = next(
            pc + 1
            for pc in range(h_entry, h_end)
            if go.frames(pc)[-1].line == _line("acc ^= digest(acc)")
        )
    proc = subprocess.Popen([binary, "-seconds", "30"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.2)
        counters = Counters()
        sym = Symbolizer(ProcessTable(counters), SymbolizeConfig(), counters)
        assert sym.table.observe(proc.pid) is not None
        # non-PIE: the link-time address is the process address
        raw = RawSample(proc.pid, proc.pid, 0, "pgohot", time.time_ns(), 1, (inl, ret), ())
        [s] = sym.symbolize(RawBatch(cpu_profile_type(99), [raw])).samples
        assert counters.get("symbolize", "go_binaries") == 1
        assert _otlp_frame_types([s]) == {"go"}
        out = []
        for loc in s.stack.frames:
            assert loc.frame_type == FRAME_GO
            out.append(
                [
                    (ln.function.name, ln.line, ln.function.start_line, ln.function.filename)
                    for ln in loc.lines
                ]
            )
        sym.close()
        return out
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("version", [gt.OLD, gt.MID, gt.NEW])
def test_live_go_process_named_stripped_or_not(version: str) -> None:
    gt.require(version)
    full = _frames(str(gt.workload("pgohot", version)))
    stripped = _frames(str(gt.workload("pgohot", version, stripped=True)))
    leaf, caller = full
    assert [f[0] for f in leaf] == ["main.rotate", "main.digest"]  # inlined first
    assert leaf[0][2] == _line("func rotate") and leaf[1][2] == _line("func digest")
    assert _line("func digest") < leaf[1][1] < _line("var sink")  # rotate's call site in digest
    assert caller == [
        ("main.hotLoop", _line("acc ^= digest(acc)"), _line("func hotLoop"), leaf[1][3])
    ]
    assert leaf[1][3].endswith("tests/workloads/go/pgohot/main.go")
    # a stripped build is named the same (its addresses differ only if the layout did)
    assert [[f[0:3] for f in loc] for loc in stripped] == [[f[0:3] for f in loc] for loc in full]
