"""One real collector run shared by the pyroscope and flamegraph ground-truth tests.

``cpu_shares`` (60/30/10 % of its CPU in burn_a/burn_b/burn_c) runs under the real CLI with
cpu -> symbolize -> three pyroscope exporters (push, ingest, and push with a wrong password)
to the loopback Pyroscope stand-in, and a flamegraph exporter. The run happens once per test
process (the BPF work and the workload take ~10 s); each test reads what it needs.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.collector_run import start_collector
from tests.support.pyroscope_server import PyroscopeServer, Series
from tests.support.workloads import build, run_for_cpu_time

FREQUENCY = 199
TRUTH = {"burn_a": 60.0, "burn_b": 30.0, "burn_c": 10.0}

CONFIG = """
receivers:
  cpu:
    frequency: %(hz)d
    comm: ^cpu_shares$
processors:
  symbolize: {}
exporters:
  pyroscope:
    endpoint: %(url)s
    interval: 2s
    labels: {env: test}
    tenant_id: team-a
    basic_auth: {username: collector, password: right}
  pyroscope/ingest:
    endpoint: %(url)s
    protocol: ingest
    interval: 2s
    basic_auth: {username: collector, password: right}
  pyroscope/bad:
    endpoint: %(url)s
    interval: 2s
    basic_auth: {username: collector, password: wrong}
  flamegraph:
    directory: %(out)s
    interval: 600
service:
  pipelines:
    profiles:
      receivers: [cpu]
      processors: [symbolize]
      exporters: [pyroscope, pyroscope/ingest, pyroscope/bad, flamegraph]
"""


@dataclass(frozen=True)
class Run:
    series: tuple[Series, ...]  # what the Pyroscope stand-in accepted
    problems: tuple[str, ...]  # what it refused and why
    attempts: int
    logs: str
    rc: int
    cpu_seconds: float  # CPU time cpu_shares really got
    out: Path  # the flamegraph exporter's directory


@functools.cache
def ground_truth_run() -> Run:
    binary = build("cpu_shares")
    tmp = Path(tempfile.mkdtemp(prefix="collector-pyroscope-e2e-"))
    out = tmp / "profiles"
    with PyroscopeServer(basic_auth=("collector", "right")) as srv:
        cfg = tmp / "collector.yaml"
        cfg.write_text(CONFIG % {"hz": FREQUENCY, "url": srv.url, "out": out})
        proc = start_collector(cfg)
        try:
            cpu_s = run_for_cpu_time([str(binary), "6"])
        finally:
            rc = proc.stop()  # shutdown drains the queues: no grace period needed
        return Run(
            tuple(srv.received()),
            tuple(srv.problems),
            srv.attempts,
            proc.logs(),
            rc,
            cpu_s,
            out,
        )
