"""Profiles linked to traces, end to end: real OpenTelemetry Python SDK clients send spans
through their OTLP gRPC exporter to the real collector (CLI, cpu receiver, symbolize,
correlate), which forwards the spans and exports OTLP profiles with timestamps to a loopback
backend. Ground truth: each client writes every span's thread, start and end as the SDK
recorded them; a sample is "inside" when its timestamp falls in a span of its own thread.

Client A puts thread.id on spans (2 threads, nested spans): >= 90 % of inside samples carry
their innermost span's ids, <= 2 % of outside samples carry a link, none a span of another
thread. Clients B and C set no thread.id (one span per request): B (1 thread) is matched by
pid and time; C (2 threads) shows the limit: while both threads are in a span, no link.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.otlp import decode_request
from tests.support.collector_run import start_collector
from tests.support.otlp_servers import free_port
from tests.support.otlp_traces import Backend

pytestmark = [pytest.mark.bpf, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
MAX_DELAY = 4.0

CONFIG = """
receivers:
  otlp:
    grpc: {endpoint: "127.0.0.1:%(grpc)d"}
    http: null
  cpu:
    frequency: 199
    comm: "^spanclient"
processors:
  symbolize: {}
  correlate: {max_delay: %(delay)s}
exporters:
  otlp:
    endpoint: "127.0.0.1:%(backend)d"
    tls: {insecure: true}
    interval: 1s
service:
  telemetry:
    metrics: {address: none}
  pipelines:
    traces: {receivers: [otlp], exporters: [otlp]}
    profiles: {receivers: [cpu], processors: [symbolize, correlate], exporters: [otlp]}
"""


@dataclass
class Truth:
    pid: int
    spans: list[dict]  # name, native_tid, start, end, span_id (hex)

    def innermost(self, tid: int, t: int) -> dict | None:
        best = None
        for s in self.spans:
            inside = s["native_tid"] == tid and s["start"] <= t <= s["end"]
            if inside and (best is None or s["start"] > best["start"]):
                best = s
        return best

    def open_at(self, t: int) -> int:
        return sum(1 for s in self.spans if s["start"] <= t <= s["end"])


def client(grpc: int, out: Path, *args: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "tests.support.span_client", "--endpoint", f"127.0.0.1:{grpc}"]
    return subprocess.Popen([*cmd, "--out", str(out), *args], cwd=ROOT)


def samples_of(backend: Backend) -> list:
    return [
        s for r in list(backend.profiles.requests) for b in decode_request(r) for s in b.samples
    ]


def test_samples_carry_the_span_running_on_their_thread(tmp_path: Path) -> None:
    with Backend() as backend:
        grpc = free_port()
        cfg = tmp_path / "c.yaml"
        cfg.write_text(CONFIG % {"grpc": grpc, "backend": backend.port, "delay": MAX_DELAY})
        col = start_collector(cfg)
        try:
            runs = {
                "a": client(grpc, tmp_path / "a.json", "--threads", "2", "--duration", "8"),
                "b": client(
                    grpc,
                    tmp_path / "b.json",
                    "--threads",
                    "1",
                    "--duration",
                    "8",
                    "--no-thread-id",
                    "--flat",
                ),
                "c": client(
                    grpc,
                    tmp_path / "c.json",
                    "--threads",
                    "2",
                    "--duration",
                    "8",
                    "--no-thread-id",
                    "--flat",
                    "--busy",
                    "0.3",
                ),
            }
            for p in runs.values():
                assert p.wait(120) == 0
            truths = {k: Truth(**json.loads((tmp_path / f"{k}.json").read_text())) for k in runs}
            last_end = max(s["end"] for t in truths.values() for s in t.spans)
            # Held batches are released max_delay after they came, not only at shutdown.
            while time.time_ns() < last_end + int((MAX_DELAY + 4) * 1e9):
                time.sleep(0.5)
            before_stop = sum(1 for s in samples_of(backend) if s.span_id)
        finally:
            assert col.stop() == 0, col.stderr()
        samples = samples_of(backend)
        forwarded = {sid for sid, _ in backend.traces.spans()}
    logs = col.stderr()
    assert before_stop > 0, logs

    # Spans reach the backend unchanged (every span the SDKs ended).
    for t in truths.values():
        assert {bytes.fromhex(s["span_id"]) for s in t.spans} <= forwarded

    by_pid: dict[int, list] = {}
    for s in samples:
        by_pid.setdefault(s.process.pid, []).append(s)

    # A: thread.id on spans.
    a = truths["a"]
    own = by_pid.get(a.pid, [])
    tids = {s["native_tid"] for s in a.spans}
    span_tid = {bytes.fromhex(s["span_id"]): s["native_tid"] for s in a.spans}
    inside = right = outside = outside_linked = 0
    for s in own:
        want = a.innermost(s.tid, s.time_ns)
        if s.span_id:
            assert span_tid.get(s.span_id) == s.tid, "linked to a span of another thread"
        if want is not None:
            inside += 1
            right += s.span_id == bytes.fromhex(want["span_id"])
        else:
            outside += 1
            outside_linked += bool(s.span_id)
    print(f"A: inside={inside} right={right} outside={outside} linked={outside_linked}")
    assert inside >= 200, (inside, len(own), logs)
    assert right >= 0.90 * inside, (right, inside)
    assert outside_linked <= 0.02 * max(outside, 1), (outside_linked, outside)
    assert len({s.tid for s in own if s.span_id}) == len(tids) == 2

    # B: no thread.id, one thread: pid and time are enough.
    b = truths["b"]
    worker = {s["native_tid"] for s in b.spans}
    b_inside = [
        s for s in by_pid.get(b.pid, []) if s.tid in worker and b.innermost(s.tid, s.time_ns)
    ]
    b_right = sum(
        s.span_id == bytes.fromhex(b.innermost(s.tid, s.time_ns)["span_id"]) for s in b_inside
    )
    print(f"B: inside={len(b_inside)} right={b_right}")
    assert len(b_inside) >= 100 and b_right >= 0.90 * len(b_inside)

    # C: no thread.id, two threads: while both are in a span nothing can be linked.
    c = truths["c"]
    c_own = by_pid.get(c.pid, [])
    both_open = [s for s in c_own if c.open_at(s.time_ns) >= 2]
    print(
        f"C: samples={len(c_own)} both_open={len(both_open)} "
        f"linked={sum(bool(s.span_id) for s in c_own)}"
    )
    assert len(both_open) >= 50
    assert not any(s.span_id for s in both_open)
    assert "samples_linked=" in logs
