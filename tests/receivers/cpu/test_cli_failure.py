"""A cpu receiver whose reader fails at run time, through the real CLI in a subprocess.

tests/receivers/cpu/faulty_cli.py runs ``collector.cli.main`` with the first ring buffer's
poll made to fail after a few calls; everything else is the production path: the BPF
program, the pipeline, the symbolizer, the folded exporter, exit codes and logs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.bpf

ROOT = Path(__file__).resolve().parents[3]
WAIT_S = 120.0  # only so that a broken test cannot hang; nothing here is timed
CAUSE = "reader failed: OSError: [Errno 5] injected poll failure"

FATAL = """
receivers:
  cpu:
    frequency: 199
    include_idle: true   # idle CPUs are sampled too: samples whatever else runs
    drain_interval: 0.2
processors:
  symbolize: {}
exporters:
  folded:
    directory: %(out)s
    interval: 600        # written only when the collector stops
service:
  pipelines:
    profiles:
      receivers: [cpu]
      processors: [symbolize]
      exporters: [folded]
"""

OPTIONAL = """
receivers:
  cpu:
    frequency: 199
    include_idle: true
    drain_interval: 0.2
    optional: true
  offcpu: {}
processors:
  symbolize: {}
exporters:
  folded:
    directory: %(out)s
    interval: 600
service:
  telemetry:
    report_interval: 0.5
  pipelines:
    profiles:
      receivers: [cpu, offcpu]
      processors: [symbolize]
      exporters: [folded]
"""


class Collector:
    def __init__(self, tmp: Path, config: str, fail_after: int) -> None:
        self.out = tmp / "profiles"
        cfg = tmp / "pipeline.yaml"
        cfg.write_text(config % {"out": self.out})
        self.log_path = tmp / "collector.log"
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.receivers.cpu.faulty_cli", "--config", str(cfg)],
                cwd=ROOT,
                env=dict(os.environ, FAIL_POLL_AFTER=str(fail_after)),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, pattern: str, count: int = 1) -> None:
        deadline = time.monotonic() + WAIT_S
        while len(re.findall(pattern, self.log())) < count:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}:\n{self.log()}"
            assert time.monotonic() < deadline, f"no {pattern!r}:\n{self.log()}"
            time.sleep(0.1)

    def folded_samples(self, kind: str = "cpu") -> int:
        files = self.out.glob(f"{kind}-*.folded")
        lines = [ln for f in files for ln in f.read_text().splitlines()]
        return sum(int(ln.rsplit(" ", 1)[1]) for ln in lines)

    def total(self, component: str, name: str) -> int:
        m = re.search(rf"totals component={re.escape(component)} .*\b{name}=(\d+)", self.log())
        return int(m.group(1)) if m else 0


def test_failing_reader_stops_the_collector_with_exit_4(tmp_path: Path) -> None:
    col = Collector(tmp_path, FATAL, fail_after=10)
    try:
        rc = col.proc.wait(WAIT_S)
    finally:
        if col.proc.poll() is None:
            col.proc.kill()
    log = col.log()
    assert rc == 4, log
    # The cause, logged once with its traceback, then the runtime's one line and exit.
    assert len(re.findall(r"msg='cpu receiver failed id=cpu optional=False: ", log)) == 1, log
    assert log.count("Traceback (most recent call last)") == 1, log
    assert log.count("OSError: [Errno 5] injected poll failure") == 4, log  # + traceback
    assert len(re.findall(r"fatal component=receivers/cpu error=", log)) == 1, log
    assert log.strip().endswith(f"collector: runtime failure: receivers/cpu: {CAUSE}"), log
    # Exporters flushed after the failure: every sample read before it is in the file.
    written = col.total("exporters/folded", "samples_written")
    assert written > 0, log
    assert col.folded_samples() == written
    assert col.total("receivers/cpu", "receiver_failed") == 1
    assert not re.search(r"samples_dropped=[1-9]", log), log


def test_an_optional_receiver_fails_and_the_collector_goes_on(tmp_path: Path) -> None:
    col = Collector(tmp_path, OPTIONAL, fail_after=10)
    try:
        col.wait_for(r"msg='cpu receiver failed id=cpu optional=True: ")
        # The other receiver goes on reporting: two more periodic counter reports from it.
        before = len(re.findall(r"counters component=receivers/offcpu ", col.log()))
        col.wait_for(r"counters component=receivers/offcpu ", before + 2)
        assert col.proc.poll() is None
        col.proc.send_signal(signal.SIGINT)
        rc = col.proc.wait(WAIT_S)
    finally:
        if col.proc.poll() is None:
            col.proc.kill()
    log = col.log()
    assert rc == 0, log
    assert log.count("Traceback (most recent call last)") == 1, log
    assert "fatal component=" not in log and "runtime failure" not in log, log
    assert col.total("receivers/cpu", "receiver_failed") == 1
    assert col.total("receivers/offcpu", "bpf_events") > 0
    # What cpu read before it failed and what offcpu read all along were written.
    assert col.folded_samples("cpu") > 0 and col.folded_samples("off_cpu") > 0
