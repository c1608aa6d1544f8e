"""An application instrumented with the OpenTelemetry Python SDK, as users run it: worker
threads burn CPU inside spans and sleep between them (by time, not loop counts); spans go
out through the SDK's BatchSpanProcessor and OTLP gRPC exporter. Writes the ground truth (pid,
every span's thread, start, end and ids as the SDK recorded them) as JSON at exit.

    python -m tests.support.span_client --endpoint 127.0.0.1:4317 --out truth.json \
        [--threads 2] [--duration 8] [--busy 0.15] [--idle 0.1] [--no-thread-id]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import threading
import time
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from tests.support.otlp_traces import ThreadIdSpanProcessor

COMM = b"spanclient"  # every thread inherits it: the collector's comm filter selects us


class Truth(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[dict[str, object]] = []
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.lock:
            for s in spans:
                ctx = s.get_span_context()
                self.spans.append(
                    {
                        "name": s.name,
                        "tid": s.attributes.get("thread.id") if s.attributes else None,
                        "native_tid": s.attributes.get("test.native_tid") if s.attributes else None,
                        "start": s.start_time,
                        "end": s.end_time,
                        "trace_id": f"{ctx.trace_id:032x}",
                        "span_id": f"{ctx.span_id:016x}",
                    }
                )
        return SpanExportResult.SUCCESS


def burn_until(deadline: float) -> int:
    n = 0
    while time.perf_counter() < deadline:
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--busy", type=float, default=0.15)
    ap.add_argument("--idle", type=float, default=0.1)
    ap.add_argument("--no-thread-id", action="store_true")
    ap.add_argument("--flat", action="store_true", help="one span per request, no inner span")
    a = ap.parse_args()
    ctypes.CDLL(None).prctl(15, COMM, 0, 0, 0)  # PR_SET_NAME, before any thread starts

    provider = TracerProvider(
        resource=Resource.create({"service.name": "span-client", "process.pid": os.getpid()})
    )
    if not a.no_thread_id:
        provider.add_span_processor(ThreadIdSpanProcessor())
    truth = Truth()
    provider.add_span_processor(SimpleSpanProcessor(truth))
    exporter = OTLPSpanExporter(endpoint=a.endpoint, insecure=True, timeout=10)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=1000))
    tracer = provider.get_tracer("span-client")
    stop = time.perf_counter() + a.duration

    def worker(k: int) -> None:
        i = 0
        while time.perf_counter() < stop:
            tid = threading.get_native_id()  # ground truth only, whatever the SDK is told
            with tracer.start_as_current_span(f"request-{k}") as sp:
                sp.set_attribute("test.native_tid", tid)
                if a.flat:
                    burn_until(time.perf_counter() + a.busy)
                else:
                    with tracer.start_as_current_span(f"inner-{k}") as inner:
                        inner.set_attribute("test.native_tid", tid)
                        burn_until(time.perf_counter() + a.busy / 2)
                    burn_until(time.perf_counter() + a.busy / 2)
            time.sleep(a.idle)
            i += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(a.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    provider.shutdown()  # flushes the batch processor
    with open(a.out, "w") as f:
        json.dump({"pid": os.getpid(), "spans": truth.spans}, f)


if __name__ == "__main__":
    main()
