"""The traces pipeline through the real CLI, no BPF: the OTel SDK's gRPC and HTTP span
exporters send spans to the otlp receiver; OTLP profiles with known pid, tid and times are
sent to the same receiver BEFORE the spans; correlate links them once the spans arrive; the
pprof file carries trace_id/span_id labels and the folded file starts linked stacks with the
span name. Without a traces pipeline the same receiver keeps refusing spans."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

from collector.model import (
    Function,
    Line,
    Location,
    ProcessInfo,
    ProfileBuilder,
    Sample,
    Stack,
    cpu_profile_type,
)
from collector.otlp import encode_profile_set
from tests.support.collector_run import start_collector
from tests.support.encoding_pprof import decode
from tests.support.otlp_servers import free_port
from tests.support.otlp_traces import ThreadIdSpanProcessor

PID = 4242
MS = 1_000_000
PROFILES = "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"

CONFIG = """
receivers:
  otlp:
    grpc: {endpoint: "127.0.0.1:%(grpc)d"}
    http: {endpoint: "127.0.0.1:%(http)d"}
processors:
  correlate: {max_delay: 1s}
exporters:
  pprof: {directory: "%(out)s", interval: 1s}
  folded: {directory: "%(out)s", interval: 1s, span_names: true}
service:
  telemetry: {metrics: {address: none}}
  pipelines:
    %(traces)s
    profiles: {receivers: [otlp], processors: [%(procs)s], exporters: [pprof, folded]}
"""


def stack(name: str) -> Stack:
    return Stack((Location(None, 0x1000, (Line(Function(name), 1),)),))


def profiles_request(samples: list[tuple[int, int, str]]) -> bytes:
    b = ProfileBuilder(cpu_profile_type(99))
    proc = ProcessInfo(PID, "shop")
    b.add_all(Sample(stack(fn), proc, tid, 0, "shop", t, 1) for tid, t, fn in samples)
    return encode_profile_set(b.build(), timestamps=True).SerializeToString()


async def send_profiles(port: int, body: bytes) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        await ch.unary_unary(PROFILES, request_serializer=None, response_deserializer=None)(
            body, timeout=10
        )


def spans_from_sdk(
    exporter: SpanExporter, t0: int, before: Callable[[int], None] = lambda tid: None
) -> dict[str, tuple[str, str, int]]:
    """checkout [0, 100] ms with child db [20, 40] ms, on a thread of our own that first
    calls ``before(its tid)``; returns name -> (trace_id hex, span_id hex, thread id)."""
    out: dict[str, tuple[str, str, int]] = {}

    def run() -> None:
        before(threading.get_native_id())
        provider = TracerProvider(resource=Resource.create({"process.pid": PID}))
        provider.add_span_processor(ThreadIdSpanProcessor())
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("t")
        from opentelemetry import trace

        parent = tracer.start_span("checkout", start_time=t0)
        ctx = trace.set_span_in_context(parent)
        child = tracer.start_span("db", context=ctx, start_time=t0 + 20 * MS)
        child.end(end_time=t0 + 40 * MS)
        parent.end(end_time=t0 + 100 * MS)
        for sp in (parent, child):
            c = sp.get_span_context()
            out[sp.name] = (f"{c.trace_id:032x}", f"{c.span_id:016x}", threading.get_native_id())
        provider.shutdown()

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return out


def labels(path: Path) -> list[tuple[str, dict[str, str], int]]:
    p = decode(path.read_bytes())
    s = p.string_table
    funcs = {f.id: s[f.name] for f in p.function}
    locs = {loc.id: funcs[loc.line[0].function_id] for loc in p.location}
    return [
        (locs[x.location_id[0]], {s[lb.key]: s[lb.str] for lb in x.label if lb.str}, x.value[0])
        for x in p.sample
    ]


def test_samples_sent_before_their_spans_are_linked(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    cfg = tmp_path / "c.yaml"
    traces = "traces: {receivers: [otlp]}"
    cfg.write_text(
        CONFIG
        % {
            "grpc": grpc_port,
            "http": http_port,
            "out": tmp_path,
            "traces": traces,
            "procs": "correlate",
        }
    )
    col = start_collector(cfg)
    try:
        t0 = time.time_ns()

        def samples_first(tid: int) -> None:
            # The SDK thread's samples reach the collector before any of its spans exist.
            samples = [
                (tid, t0 + 10 * MS, "in_checkout"),
                (tid, t0 + 30 * MS, "in_db"),
                (tid, t0 + 200 * MS, "outside"),
                (tid + 100_000, t0 + 30 * MS, "other_thread"),
            ]
            asyncio.run(send_profiles(grpc_port, profiles_request(samples)))

        http_spans = HttpSpans(endpoint=f"http://127.0.0.1:{http_port}/v1/traces")
        http = spans_from_sdk(http_spans, t0, samples_first)
        # And over gRPC, a second trace 1 s later (counted; no sample falls in it).
        t1 = t0 + 1000 * MS
        grpc_spans = spans_from_sdk(GrpcSpans(endpoint=f"127.0.0.1:{grpc_port}", insecure=True), t1)
        assert set(grpc_spans) == {"checkout", "db"}
        # Every sample released past max_delay and written by a window: then stop.
        want = ("in_checkout", "in_db", "outside", "other_thread")
        deadline = time.monotonic() + 60
        while not all(w in _folded(tmp_path) for w in want):
            assert time.monotonic() < deadline, (_folded(tmp_path), col.stderr())
            time.sleep(0.1)
    finally:
        assert col.stop() == 0, col.stderr()
    logs = col.stderr()
    got = {fn: lab for f in tmp_path.glob("*.pb.gz") for fn, lab, _ in labels(f)}
    assert got["in_checkout"]["span_id"] == http["checkout"][1], logs
    assert got["in_checkout"]["trace_id"] == http["checkout"][0]
    assert got["in_db"]["span_id"] == http["db"][1]
    assert "span_id" not in got["outside"] and "span_id" not in got["other_thread"]
    assert len(got["in_db"]["trace_id"]) == 32 and len(got["in_db"]["span_id"]) == 16
    folded = _folded(tmp_path)
    assert "checkout;shop;in_checkout 1" in folded and "db;shop;in_db 1" in folded
    assert "\nshop;outside 1" in "\n" + folded
    assert "samples_linked=2" in logs and "spans_received=4" in logs, logs


def _folded(out: Path) -> str:
    return "".join(f.read_text() for f in out.glob("*.folded"))


def test_without_a_traces_pipeline_spans_are_refused(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        CONFIG % {"grpc": grpc_port, "http": http_port, "out": tmp_path, "traces": "", "procs": ""}
    )
    col = start_collector(cfg)
    try:
        from opentelemetry.sdk.trace.export import SpanExportResult

        exp = GrpcSpans(endpoint=f"127.0.0.1:{grpc_port}", insecure=True, timeout=5)
        provider = TracerProvider(resource=Resource.create({"process.pid": os.getpid()}))
        results: list[SpanExportResult] = []

        class Watch(SimpleSpanProcessor):
            def on_end(self, span):  # type: ignore[no-untyped-def]
                results.append(exp.export([span]))

        provider.add_span_processor(Watch(exp))
        with provider.get_tracer("t").start_as_current_span("x"):
            pass
        assert results == [SpanExportResult.FAILURE]
    finally:
        assert col.stop() == 0
    assert "traces_refused=1" in col.stderr()
