"""End to end on the real kernel: `collector --config` with cpu -> symbolize -> folded, pprof.

Ground truth: cpu_shares burns 60/30/10 % of its CPU in burn_a/burn_b/burn_c; short_lived
burns ~0.5 s in one function and exits long before the profiles are written.
Sampling at 199 Hz for 6 s gives ~1190 samples on an idle machine: the binomial error of a
60 % share is then 1.4 points. On a busy machine the time-based workloads get less CPU and
so fewer samples: expected counts follow the CPU time they really got (wait4's rusage), and
share tolerances widen with the binomial error (tests/support/sampling.py), never below 5.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.collector_run import start_collector
from tests.support.encoding_pprof import go_pprof
from tests.support.folded import read_folded
from tests.support.pipelines import profiles_yaml
from tests.support.sampling import expected_samples, share_tolerance_pp
from tests.support.workloads import build, run_for_cpu_time

pytestmark = [pytest.mark.bpf, pytest.mark.slow]

TRUTH = {"burn_a": 60.0, "burn_b": 30.0, "burn_c": 10.0}


def shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: 100.0 * v / total for k, v in counts.items()}


@dataclass
class Run:
    out: Path
    logs: str
    shares_cpu_s: float  # CPU seconds cpu_shares really got (less than 6 on a busy machine)
    short_cpu_s: float


def assert_shares(counts: dict[str, int]) -> None:
    n = sum(counts.values())
    got = shares(counts)
    for fn, truth in TRUTH.items():
        assert abs(got[fn] - truth) <= share_tolerance_pp(truth, n), (got, n)


@pytest.fixture(scope="module")
def profiled_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    shares_bin = build("cpu_shares")  # PIE, as gcc builds by default: exercises load offsets
    short_bin = build("short_lived")
    tmp = tmp_path_factory.mktemp("e2e_cpu")
    out = tmp / "profiles"
    cfg = tmp / "pipeline.yaml"
    cfg.write_text(
        profiles_yaml(
            out, {"cpu": {"frequency": 199}}, exporters=("folded", "pprof"), metrics_address=None
        )
    )
    col = start_collector(cfg)  # returns once the BPF program is attached
    try:
        shares_cpu = run_for_cpu_time([str(shares_bin), "6"])
        short_cpu = run_for_cpu_time([str(short_bin)])
    finally:
        rc = col.stop()
    assert rc == 0, col.logs()
    return Run(out, col.logs(), shares_cpu, short_cpu)


def test_folded_shares_match_ground_truth(profiled_run: Run) -> None:
    out, logs = profiled_run.out, profiled_run.logs
    folded = read_folded(out)
    per_fn: Counter[str] = Counter()
    for stack, n in folded.items():
        frames = stack.split(";")
        if frames[0] == "cpu_shares" and frames[-1] in TRUTH:
            per_fn[frames[-1]] += n
    # About 199 samples per CPU second the workload got (~1190 on an idle machine).
    want = expected_samples(profiled_run.shares_cpu_s, 199)
    assert sum(per_fn.values()) >= 0.8 * want, (per_fn, want, logs)
    assert_shares(per_fn)
    # Each identical symbolized stack is one line.
    assert len(folded) == len(set(folded))
    # The stacks run from the process name through main to the burn function.
    assert any(re.fullmatch(r"cpu_shares;.*main;burn_a", s) for s in folded)


def test_pprof_agrees_with_folded(profiled_run: Run) -> None:
    out = profiled_run.out
    files = sorted(out.glob("cpu-*.pb.gz"))
    assert files, list(out.iterdir())
    folded = read_folded(out)
    folded_leaf: Counter[str] = Counter()
    for stack, n in folded.items():
        folded_leaf[stack.split(";")[-1]] += n
    for f in files:
        top = go_pprof(f, "-top", "-sample_index=samples", "-nodecount=100000", "-nodefraction=0")
        flat = {}
        for line in top.splitlines():
            m = re.match(r"\s*(\d+)\s+[\d.]+%\s+[\d.]+%\s+\d+\s+[\d.]+%\s+(\S.*)$", line)
            if m:
                flat[m.group(2).strip()] = int(m.group(1))
        for fn in TRUTH:
            assert flat.get(fn) == folded_leaf[fn], (fn, flat.get(fn), folded_leaf[fn])
        assert_shares({fn: flat[fn] for fn in TRUTH})
        raw = go_pprof(f, "-raw")
        assert "samples/count" in raw and "cpu/nanoseconds" in raw
        assert re.search(r"comm:\[cpu_shares\]", raw) and "pid:" in raw and "tid:" in raw


def test_short_lived_process_is_symbolized(profiled_run: Run) -> None:
    out, logs = profiled_run.out, profiled_run.logs
    folded = read_folded(out)
    mine = {s: n for s, n in folded.items() if s.startswith("short_lived;")}
    assert mine, logs
    named = sum(n for s, n in mine.items() if s.endswith(";short_lived_burn_7f3a"))
    # ~0.5 s of CPU at 199 Hz is ~100 samples; nearly all of them must carry the name.
    want = expected_samples(profiled_run.short_cpu_s, 199)
    assert named >= 0.8 * sum(mine.values()) and named >= 0.5 * want, (mine, want)


def test_every_sample_is_accounted_for(profiled_run: Run) -> None:
    """What the kernel handed over is what the files hold: no silent loss on the way."""
    out, logs = profiled_run.out, profiled_run.logs

    def total(component: str, name: str) -> int:
        m = re.search(rf"msg='totals component={component} [^']*\b{name}=(\d+)", logs)
        return int(m.group(1)) if m else 0

    from_kernel = total("receivers/cpu", "bpf_events")
    assert from_kernel > 0, logs
    assert total("exporters/folded", "samples_written") == from_kernel, logs
    assert total("exporters/pprof", "samples_written") == from_kernel, logs
    assert sum(read_folded(out).values()) == from_kernel
    assert re.search(r"dropped\w*=[1-9]", logs) is None, logs
