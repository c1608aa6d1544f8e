"""Correlation under load: 2,000 spans/s into the otlp receiver for 60 s while the cpu
receiver profiles the whole machine through symbolize -> correlate -> folded.

Two runs of the real collector with the same config, side by side in one invocation (modes
alternate over --rounds): "idle" (no spans sent) and "spans" (a sender in this process posts
TraceService/Export requests, each span 1 ms on the sender's own threads). Requests carry
512 spans by default, what the OTel SDKs' BatchSpanProcessor sends (max_export_batch_size),
so 2,000 spans/s are ~4 requests/s; --per-request 100 sends 20 smaller ones a second.
Printed per mode: the collector's CPU seconds per wall second over the steady-state window
(/proc/PID/stat), its peak RSS, the span index's peak size (the spans_peak counter), and
whether any sample was lost to correlation (samples entering correlate == samples leaving
it; samples_held_over_limit; pipeline drops). Then the index's memory at that peak,
measured with tracemalloc on the real SpanIndex fed the same requests, and at max_spans.

Run as root after `make test`:
    .venv/bin/python benchmarks/correlate_load.py [--seconds 60] [--rate 2000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from procstat import cpu_seconds, status_kb  # noqa: E402

from collector.spans import SpanIndex, decode_traces  # noqa: E402

COLLECTOR = ROOT / ".venv" / "bin" / "collector"
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PER_REQUEST = 512
MAX_SPANS = 100_000

CONFIG = """
receivers:
  cpu: {frequency: 99}
  otlp:
    grpc: {endpoint: "127.0.0.1:%(port)d"}
    http: null
processors:
  symbolize: {}
  correlate: {max_spans: %(max_spans)d}
exporters:
  folded: {directory: "%(out)s", interval: 10s}
service:
  telemetry: {metrics: {address: none}, report_interval: 3600}
  pipelines:
    traces: {receivers: [otlp]}
    profiles: {receivers: [cpu], processors: [symbolize, correlate], exporters: [folded]}
"""


def request(now_ns: int, seq: int, per_request: int = PER_REQUEST) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.int_value = "process.pid", os.getpid()
    ss = rs.scope_spans.add()
    tid = threading.get_native_id()
    for i in range(per_request):
        sp = ss.spans.add()
        n = seq * per_request + i
        sp.trace_id = n.to_bytes(16, "big")
        sp.span_id = (n + 1).to_bytes(8, "big")
        sp.name = "GET /checkout"
        sp.start_time_unix_nano = now_ns - (per_request - i) * 1_000_000
        sp.end_time_unix_nano = sp.start_time_unix_nano + 1_000_000
        a = sp.attributes.add()
        a.key, a.value.int_value = "thread.id", tid + i % 4
    return req.SerializeToString()


def send(port: int, rate: int, stop: threading.Event, sent: list[int], per: int) -> None:
    per_s = rate / per
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = ch.unary_unary(TRACES, request_serializer=None, response_deserializer=None)
        t0 = time.monotonic()
        seq = 0
        while not stop.is_set():
            call(request(time.time_ns(), seq, per), timeout=10)
            seq += 1
            sent[0] += per
            delay = t0 + seq / per_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def totals(log: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for m in re.finditer(r"msg='totals component=(\S+) ([^']*)'", log):
        out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return out


def run(mode: str, seconds: float, rate: int, per: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg = Path(tmp) / "c.yaml"
        cfg.write_text(CONFIG % {"port": port, "out": tmp, "max_spans": MAX_SPANS})
        log = Path(tmp) / "log"
        with open(log, "w") as err:
            proc = subprocess.Popen([str(COLLECTOR), "--config", str(cfg)], stderr=err)
            while "started pipelines=" not in log.read_text():
                if proc.poll() is not None:
                    raise SystemExit(log.read_text())
                time.sleep(0.2)
            stop, sent = threading.Event(), [0]
            sender = threading.Thread(target=send, args=(port, rate, stop, sent, per))
            if mode == "spans":
                sender.start()
            time.sleep(15)  # past the first windows, index filled to its steady size
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(seconds)
            c1, t1 = cpu_seconds(proc.pid), time.monotonic()
            rss = status_kb(proc.pid, "VmHWM") / 1024
            stop.set()
            if sender.is_alive():
                sender.join()
            proc.send_signal(signal.SIGINT)
            proc.wait(120)
        t = totals(log.read_text())
    corr = t.get("processors/correlate", {})
    pipe = t.get("pipelines/profiles", {})
    into = t.get("processors/symbolize", {})
    return {
        "cpu": (c1 - c0) / (t1 - t0),
        "rss": rss,
        "spans_sent": sent[0],
        "spans_indexed": corr.get("spans_indexed", 0),
        "spans_peak": corr.get("spans_peak", 0),
        "linked": corr.get("samples_linked", 0),
        "out": corr.get("samples_linked", 0) + corr.get("samples_unlinked", 0),
        "held_over": corr.get("samples_held_over_limit", 0),
        "dropped": pipe.get("samples_dropped", 0) + pipe.get("samples_dropped_at_shutdown", 0),
        "accepted": t.get("receivers/cpu", {}).get("accepted_samples", 0),
        "_sym": len(into),
    }


def index_memory(peak: int) -> tuple[float, float]:
    """MB the real SpanIndex holds at ``peak`` spans and at MAX_SPANS (tracemalloc)."""
    out = []
    for n in (peak, MAX_SPANS):
        batches = [decode_traces(request(time.time_ns(), i)) for i in range(n // PER_REQUEST)]
        tracemalloc.start()
        idx = SpanIndex(MAX_SPANS, 3600 * 10**9)
        for b in batches:
            idx.add_batch(b)
        cur, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out.append(cur / 2**20)
        del idx
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--per-request", type=int, default=PER_REQUEST)
    a = ap.parse_args()
    res: dict[str, list[dict[str, float]]] = {"idle": [], "spans": []}
    for _ in range(a.rounds):
        for mode in ("idle", "spans"):
            r = run(mode, a.seconds, a.rate, a.per_request)
            res[mode].append(r)
            print(mode, {k: round(v, 4) for k, v in r.items() if not k.startswith("_")})
    med = {m: statistics.median(r["cpu"] for r in rs) for m, rs in res.items()}
    peak = max(r["spans_peak"] for r in res["spans"])
    at_peak, at_max = index_memory(int(peak))
    print(
        f"collector CPU, cores: idle {med['idle']:.4f}  spans {med['spans']:.4f}  "
        f"added {100 * (med['spans'] - med['idle']):.2f}% of a core"
    )
    print(
        f"span index peak {peak:.0f} spans (max_spans {MAX_SPANS}): {at_peak:.1f} MB; "
        f"at max_spans {at_max:.1f} MB"
    )
    for m, rs in res.items():
        for r in rs:
            ok = r["out"] == r["accepted"] and not r["held_over"] and not r["dropped"]
            print(
                f"{m}: samples accepted={r['accepted']:.0f} out of correlate={r['out']:.0f} "
                f"linked={r['linked']:.0f} held_over_limit={r['held_over']:.0f} "
                f"pipeline_drops={r['dropped']:.0f} -> {'none lost' if ok else 'LOST'}"
            )


if __name__ == "__main__":
    main()
