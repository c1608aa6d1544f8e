"""What a traces pipeline carries: the OTLP request as received plus the correlation fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # the protobuf modules load with the first decode: a profiles-only
    # collector imports this module (queues tell spans from samples) but never decodes
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

# tid of a span that says nothing about its thread (no ``thread.id`` attribute).
NO_THREAD = -1
ATTR_PID = "process.pid"
ATTR_TID = "thread.id"


class Span(NamedTuple):
    pid: int
    tid: int  # NO_THREAD when the span carries no thread.id
    start_ns: int
    end_ns: int
    trace_id: bytes  # 16 bytes
    span_id: bytes  # 8 bytes
    name: str = ""


@dataclass(frozen=True, slots=True)
class SpanBatch:
    """One export request. ``payload`` is forwarded byte for byte by exporters; ``spans``
    holds only the spans correlation can use (with a pid); ``span_count`` counts them all."""

    payload: bytes
    spans: tuple[Span, ...]
    span_count: int
    without_pid: int = 0
    receiver_id: str = ""
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def sample_count(self) -> int:  # what a queue drop of it loses, in the queue counters
        return self.span_count


def _int(v: AnyValue) -> int | None:
    kind = v.WhichOneof("value")
    if kind == "int_value":
        return int(v.int_value)
    if kind == "string_value" and v.string_value.isdigit():  # some SDKs send ids as text
        return int(v.string_value)
    return None


def decode_traces(body: bytes, receiver_id: str = "") -> SpanBatch:
    """Parse an ExportTraceServiceRequest (raises google.protobuf DecodeError)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    req = ExportTraceServiceRequest.FromString(body)
    spans: list[Span] = []
    total = without_pid = 0
    for rs in req.resource_spans:
        pid = None
        for kv in rs.resource.attributes:
            if kv.key == ATTR_PID:
                pid = _int(kv.value)
        for ss in rs.scope_spans:
            n = len(ss.spans)
            total += n
            if pid is None:
                without_pid += n
                continue
            append = spans.append
            for sp in ss.spans:
                trace_id, span_id = sp.trace_id, sp.span_id
                if len(trace_id) != 16 or len(span_id) != 8:
                    without_pid += 1  # unusable for a link: counted with the pid-less ones
                    continue
                tid = NO_THREAD
                for kv in sp.attributes:
                    if kv.key == ATTR_TID:
                        t = _int(kv.value)
                        tid = NO_THREAD if t is None else t
                start = sp.start_time_unix_nano
                append(
                    Span(
                        pid, tid, start, sp.end_time_unix_nano or start, trace_id, span_id, sp.name
                    )
                )
    return SpanBatch(body, tuple(spans), total, without_pid, receiver_id)
