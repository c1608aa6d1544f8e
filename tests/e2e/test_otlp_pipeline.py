"""End to end over OTLP: collector A (cpu -> symbolize -> otlp) sends to collector B
(otlp receiver -> pprof) on loopback, both real CLI processes; `go tool pprof` reads B's files.

Ground truth: cpu_shares burns 60/30/10 % of its CPU in burn_a/burn_b/burn_c. Expected
counts follow the CPU time it really got, tolerances the binomial error (see test_cpu_pipeline).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.collector_run import start_collector
from tests.support.encoding_pprof import go_pprof
from tests.support.otlp_servers import free_port
from tests.support.sampling import expected_samples, share_tolerance_pp
from tests.support.workloads import build, run_for_cpu_time

pytestmark = [pytest.mark.bpf, pytest.mark.slow]

TRUTH = {"burn_a": 60.0, "burn_b": 30.0, "burn_c": 10.0}

CONFIG_B = """
receivers:
  otlp:
    grpc:
      endpoint: 127.0.0.1:%(grpc)d
    http:
      endpoint: 127.0.0.1:%(http)d
exporters:
  pprof:
    directory: %(out)s
    interval: 600
service:
  pipelines:
    profiles:
      receivers: [otlp]
      exporters: [pprof]
"""

CONFIG_A = """
receivers:
  cpu:
    frequency: 199
processors:
  symbolize: {}
exporters:
  otlp:
    endpoint: 127.0.0.1:%(grpc)d
    tls:
      insecure: true
    interval: 2s
service:
  pipelines:
    profiles:
      receivers: [cpu]
      processors: [symbolize]
      exporters: [otlp]
"""


def test_cpu_profile_over_otlp_to_pprof(tmp_path: Path) -> None:
    shares_bin = build("cpu_shares")
    out = tmp_path / "profiles"
    ports = {"grpc": free_port(), "http": free_port(), "out": str(out)}
    (tmp_path / "b.yaml").write_text(CONFIG_B % ports)
    (tmp_path / "a.yaml").write_text(CONFIG_A % ports)
    b = start_collector(tmp_path / "b.yaml")  # listening once this returns
    a = None
    try:
        a = start_collector(tmp_path / "a.yaml")
        cpu_s = run_for_cpu_time([str(shares_bin), "6"])
        # No grace period: shutdown itself must drain A's queues and flush its exporter.
    finally:
        rc_a = a.stop() if a is not None else None
        rc_b = b.stop()
    logs = f"A:\n{a.logs() if a else ''}\nB:\n{b.logs()}"
    assert rc_a == 0 and rc_b == 0, logs
    files = sorted(out.glob("cpu-*.pb.gz"))
    assert files, logs
    flat: dict[str, int] = {}
    for f in files:
        top = go_pprof(f, "-top", "-sample_index=samples", "-nodecount=100000", "-nodefraction=0")
        for line in top.splitlines():
            m = re.match(r"\s*(\d+)\s+[\d.]+%\s+[\d.]+%\s+\d+\s+[\d.]+%\s+(\S.*)$", line)
            if m:
                name = m.group(2).strip()
                flat[name] = flat.get(name, 0) + int(m.group(1))
        raw = go_pprof(f, "-raw")
        assert "samples/count" in raw and "cpu/nanoseconds" in raw
    got = {fn: flat.get(fn, 0) for fn in TRUTH}
    total = sum(got.values())
    want = expected_samples(cpu_s, 199)  # ~1190 on an idle machine
    assert total >= 0.8 * want, (got, want, logs)
    for fn, truth in TRUTH.items():
        assert abs(100.0 * got[fn] / total - truth) <= share_tolerance_pp(truth, total), got
    # Nothing lost on the wire: what A sent is what B received and what B's pprof wrote.
    sent = re.search(r"component=exporters/otlp .*sent_samples=(\d+)", a.logs())
    received = re.search(r"component=receivers/otlp .*received_samples=(\d+)", b.logs())
    written = re.search(r"component=exporters/pprof .*samples_written=(\d+)", b.logs())
    assert sent and received and written, logs
    assert sent.group(1) == received.group(1) == written.group(1), logs
    assert "refused_requests_invalid" not in b.logs(), logs
