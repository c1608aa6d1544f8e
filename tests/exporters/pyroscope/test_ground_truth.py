"""Ground truth through the real kernel and CLI: cpu_shares (60/30/10 % in burn_a/b/c)
-> cpu receiver -> symbolize -> pyroscope (push and ingest) -> the loopback Pyroscope
stand-in, whose profiles `go tool pprof` reads. A third exporter with a wrong password gets
401s: one clear line, counted, never retried. See tests/support/ground_truth_run.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.encoding_pprof import go_pprof
from tests.support.ground_truth_run import FREQUENCY, TRUTH, ground_truth_run
from tests.support.sampling import expected_samples, share_tolerance_pp

pytestmark = [pytest.mark.bpf, pytest.mark.slow]


def flat_counts(tmp_path: Path, raws: list[bytes]) -> dict[str, int]:
    flat: dict[str, int] = {}
    for i, raw in enumerate(raws):
        f = tmp_path / f"p{i}.pb"
        f.write_bytes(raw)
        out = go_pprof(f, "-top", "-sample_index=samples", "-nodecount=100000", "-nodefraction=0")
        for line in out.splitlines():
            m = re.match(r"\s*(\d+)\s+[\d.]+%\s+[\d.]+%\s+\d+\s+[\d.]+%\s+(\S.*)$", line)
            if m:
                flat[m.group(2).strip()] = flat.get(m.group(2).strip(), 0) + int(m.group(1))
    return flat


def counter(logs: str, component: str, name: str) -> int:
    """The total a counter reached (the shutdown report carries the totals)."""
    found = re.findall(rf"component=exporters/{re.escape(component)} .*?\b{name}=(\d+)", logs)
    return int(found[-1]) if found else 0


@pytest.mark.parametrize("protocol", ["push", "ingest"])
def test_shares_as_go_pprof_reads_them(tmp_path: Path, protocol: str) -> None:
    run = ground_truth_run()
    assert run.rc == 0, run.logs
    assert run.problems == (), run.problems  # every accepted body passed Pyroscope's checks
    mine = [s for s in run.series if s.protocol == protocol]
    assert mine, run.logs
    assert {s.labels["service_name"] for s in mine} == {"cpu_shares"}
    if protocol == "push":
        assert all(
            s.labels == {"__name__": "process_cpu", "service_name": "cpu_shares", "env": "test"}
            for s in mine
        )
        assert {s.tenant for s in mine} == {"team-a"}
    else:
        assert all(s.labels["__name__"] == "process_cpu" for s in mine)
        assert all(s.labels["pyroscope_spy"] == "ebpfspy" for s in mine)
        assert all(s.query["name"] == "cpu_shares{}" for s in mine)
    flat = flat_counts(tmp_path, [s.raw for s in mine])
    got = {fn: flat.get(fn, 0) for fn in TRUTH}
    total = sum(got.values())
    want = expected_samples(run.cpu_seconds, FREQUENCY)
    assert total >= 0.8 * want, (got, want)
    for fn, truth in TRUTH.items():
        share = 100.0 * got[fn] / total
        assert abs(share - truth) <= share_tolerance_pp(truth, total), (got, fn, share)
    # nothing lost on the way: what the exporter counts as sent is what the server holds
    component = "pyroscope" if protocol == "push" else "pyroscope/ingest"
    received = sum(v for s in mine for sm in s.profile.sample for v in sm.value[:1])
    assert counter(run.logs, component, "sent_samples") == received


def test_a_wrong_password_is_one_counted_error_not_a_retry_storm() -> None:
    run = ground_truth_run()
    assert run.rc == 0, run.logs
    failed = counter(run.logs, "pyroscope/bad", "failed_requests_permanent")
    assert failed >= 2  # windows every 2 s for 6 s, each refused
    assert counter(run.logs, "pyroscope/bad", "retries") == 0
    assert counter(run.logs, "pyroscope/bad", "sent_requests") == 0
    assert counter(run.logs, "pyroscope/bad", "failed_samples_permanent") > 0
    # Exactly as many POSTs as the good push exporter made plus the ingest ones plus one per
    # refused request: nothing was tried twice.
    sent = sum(counter(run.logs, c, "sent_requests") for c in ("pyroscope", "pyroscope/ingest"))
    assert run.attempts == sent + failed
    lines = [
        ln
        for ln in run.logs.splitlines()
        if "pyroscope/bad: permanent error" in ln and "suppressed=" not in ln
    ]
    assert len(lines) == 1, lines
    assert "status=401" in lines[0] and "unauthenticated" in lines[0]
    assert "wrong" not in run.logs  # the password never reaches a log
