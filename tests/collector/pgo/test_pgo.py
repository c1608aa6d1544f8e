"""collector pgo without BPF: Go's own runtime/pprof profile of pgohot, mixed with files the
command must pass over (another binary's samples, an off-CPU profile, a corrupt file), gives
a profile that go build -pgo accepts and reads the same hot edges from."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from collector.pgo import PgoError, build_pgo
from collector.pgo.profile_pb import profile_class
from tests.support import gotoolchains as gt
from tests.support.pgo_check import collector_pgo, hot_inlined, hottest_callee, pgo_build

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def go_profile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    gt.require(gt.NEW)
    binary = gt.workload("pgohot", gt.NEW)
    d = tmp_path_factory.mktemp("goprof")
    subprocess.run(
        [str(binary), "-seconds", "3", "-cpuprofile", str(d / "go-cpu.pprof")],
        check=True,
        capture_output=True,
    )
    return binary, d / "go-cpu.pprof"


def _other_files(d: Path) -> None:
    p = profile_class()()
    p.string_table.extend(["", "off_cpu", "nanoseconds"])
    p.sample_type.add(type=1, unit=2)
    p.sample.add(location_id=[], value=[5])
    (d / "offcpu-1.pb.gz").write_bytes(gzip.compress(p.SerializeToString()))
    (d / "cpu-corrupt.pb.gz").write_bytes(gzip.compress(b"\xff\xff\xff\xff not a profile"))
    (d / "cpu-truncated.pb.gz").write_bytes(gzip.compress(bytes(range(256)) * 64)[:200])


def test_go_runtime_profile_through_collector_pgo(go_profile, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    binary, prof = go_profile
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "cpu-0.pb.gz").write_bytes(prof.read_bytes())  # runtime/pprof writes gzip
    _other_files(d)
    out = tmp_path / "default.pgo"
    r = collector_pgo(d, binary, out)
    assert r.returncode == 0, r.stderr
    assert "matched by build id" in r.stderr  # Go writes the GNU build id of the section
    assert "2 unreadable and 1 non-CPU files passed over" in r.stderr, r.stderr
    assert "skipped" in r.stderr and "cpu-corrupt.pb.gz" in r.stderr
    output = pgo_build(gt.NEW, out, tmp_path / "pgohot.pgo")
    assert hottest_callee(output, "main.hotLoop")[0] == "main.(*fnv).Mix", output
    assert ("main.hotLoop", "main.newState") in hot_inlined(output), output


def test_samples_of_another_binary_are_dropped(go_profile, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    binary, prof = go_profile
    d = tmp_path / "p"
    d.mkdir()
    (d / "cpu.pprof").write_bytes(prof.read_bytes())
    other = gt.workload("pgohot", gt.NEW, stripped=True)  # another build: another build id
    with pytest.raises(PgoError, match="no CPU samples of"):
        build_pgo(d, other, tmp_path / "x.pgo")
    r = build_pgo(d, binary, tmp_path / "ok.pgo")
    assert r.samples_kept > 100 and r.functions_with_start_line == r.functions
    assert not (tmp_path / "x.pgo").exists()


def test_errors_are_one_line(tmp_path: Path) -> None:
    r = collector_pgo(tmp_path / "none", "/bin/true", tmp_path / "o")
    assert r.returncode == 2
    assert r.stderr.strip() == f"collector: error: --from {tmp_path / 'none'} is not a directory"
