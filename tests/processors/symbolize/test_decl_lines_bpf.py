"""Decl lines through the real collector: the cpu receiver samples the C, C++ and Rust decl
fixtures (-O2, inlined calls), the symbolize processor names them, the pprof exporter writes
the windows. Every sampled location of the fixtures' own code must carry, for its function
and each inlined call, the decl line and file that pyelftools reads from the same binary.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from collector.elf import ElfReader
from processors.symbolize import KERNEL_MAPPING_NAME
from tests.processors.symbolize import decl_truth as dt
from tests.support.collector_run import start_collector
from tests.support.encoding_pprof import decode
from tests.support.pipelines import profiles_yaml

pytestmark = [pytest.mark.bpf, pytest.mark.slow]
ROUNDS = {"c": 600_000, "cc": 450_000, "rs": 1_100_000}  # about 3 s each on a quiet machine
HOT = {  # functions that must be among the checked ones, by the decl marker
    "c": ("weigh", "accumulate"),
    "cc": ("Grid::cell", "Grid::sum"),
    "rs": ("measure", "fold"),
}


def test_pprof_start_lines_equal_pyelftools(tmp_path: Path) -> None:
    kinds = [k for k in ROUNDS if dt.have(k) is None]
    assert "c" in kinds and "cc" in kinds, "gcc and g++ are part of the test machine"
    bins = {k: dt.build(k, 2, tmp_path) for k in kinds}
    out = tmp_path / "profiles"
    cfg = tmp_path / "decl.yaml"
    cpu = {"frequency": 199, "comm": "^decl_"}
    cfg.write_text(profiles_yaml(out, {"cpu": cpu}, exporters=("pprof",), interval=2))
    col = start_collector(cfg)
    try:
        for k, exe in bins.items():
            r = subprocess.run([str(exe), str(ROUNDS[k])], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
    finally:
        rc = col.stop()
    assert rc == 0, col.logs()

    truths = {str(exe): (k, dt.Truth(exe, dt.SOURCES[k])) for k, exe in bins.items()}
    readers = {path: ElfReader(os.open(path, os.O_RDONLY)) for path in truths}
    checked: dict[str, set[int]] = {k: set() for k in bins}
    mismatches, frames = [], 0
    for f in sorted(out.glob("cpu-*.pb.gz")):
        p = decode(f.read_bytes())
        st = p.string_table
        fns = {x.id: x for x in p.function}
        locs = {x.id: x for x in p.location}
        maps = {x.id: x for x in p.mapping}
        for s in p.sample:
            # kernel frames come first; the user leaf is looked up at its address, callers at
            # their call instruction (return address - 1)
            kernel = [
                lid in locs
                and maps.get(locs[lid].mapping_id) is not None
                and st[maps[locs[lid].mapping_id].filename] == KERNEL_MAPPING_NAME
                for lid in s.location_id
            ]
            leaf = kernel.index(False) if False in kernel else -1
            for i, lid in enumerate(s.location_id):
                loc = locs[lid]
                m = maps.get(loc.mapping_id)
                if m is None or st[m.filename] not in truths or not loc.line:
                    continue
                kind, truth = truths[st[m.filename]]
                lookup = loc.address - (0 if i == leaf else 1)
                vaddr = readers[st[m.filename]].file_offset_to_vaddr(
                    lookup - m.memory_start + m.file_offset
                )
                want = truth.chain(vaddr) if vaddr is not None else []
                got = [
                    (
                        fns[ln.function_id].start_line,
                        os.path.basename(st[fns[ln.function_id].filename]),
                    )
                    for ln in loc.line
                ][::-1]
                if not want:
                    continue  # outside the fixture's own unit (libc start code, std)
                if got != want:
                    mismatches.append((kind, hex(vaddr), got, want))
                checked[kind].update(line for line, _ in got)
                frames += s.value[0]  # a pprof sample is one stack's record, of many samples
    for fd in (r.fd for r in readers.values()):
        os.close(fd)
    assert not mismatches, (len(mismatches), frames, [str(m) for m in mismatches[:4]])
    assert frames > 100, frames
    for kind in bins:
        for name in HOT[kind]:
            assert dt.marker(kind, name) in checked[kind], (kind, name, checked[kind], col.logs())
