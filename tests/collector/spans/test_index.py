"""The span index: matching rules (thread, innermost, pid-only), bounds, expiry; decoding."""

from __future__ import annotations

import os

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.spans import NO_THREAD, Span, SpanIndex, decode_traces

S = 1_000_000_000
NOW = 1_700_000_000 * S


def span(pid: int, tid: int, start: float, end: float, n: int) -> Span:
    return Span(pid, tid, NOW + int(start * S), NOW + int(end * S), bytes([n]) * 16, bytes([n]) * 8)


def index(max_spans: int = 1000, retention: float = 30.0, now: list[int] | None = None):
    counts: dict[str, int] = {}
    clock = now or [NOW + 10 * S]

    def count(name: str, n: int) -> None:
        counts[name] = counts.get(name, 0) + n

    return SpanIndex(max_spans, int(retention * S), count, lambda: clock[0]), counts, clock


def at(t: float) -> int:
    return NOW + int(t * S)


def test_thread_and_time_must_match() -> None:
    idx, counts, _ = index()
    idx.add([span(10, 11, 1, 2, 1), span(10, 12, 1, 2, 2)])
    assert idx.lookup(10, 11, at(1.5)).span_id == bytes([1]) * 8
    assert idx.lookup(10, 12, at(1.5)).span_id == bytes([2]) * 8
    assert idx.lookup(10, 13, at(1.5)) is None  # another thread of the process
    assert idx.lookup(99, 11, at(1.5)) is None  # another process with the same tid
    assert idx.lookup(10, 11, at(2.5)) is None  # after the span
    assert idx.lookup(10, 11, at(0.5)) is None  # before it
    assert idx.lookup(10, 11, at(1)) is not None and idx.lookup(10, 11, at(2)) is not None
    assert counts["spans_indexed"] == 2


def test_innermost_wins() -> None:
    idx, _, _ = index()
    # parent [0, 10], child [2, 8], grandchild [3, 4], a later sibling [5, 6]
    idx.add([span(1, 1, 3, 4, 3), span(1, 1, 0, 10, 1), span(1, 1, 2, 8, 2), span(1, 1, 5, 6, 4)])
    got = {t: idx.lookup(1, 1, at(t)).trace_id[0] for t in (1, 2.5, 3.5, 4.5, 5.5, 9)}
    assert got == {1: 1, 2.5: 2, 3.5: 3, 4.5: 2, 5.5: 4, 9: 1}


def test_equal_starts_the_shorter_is_inner() -> None:
    idx, _, _ = index()
    idx.add([span(1, 1, 0, 10, 1), span(1, 1, 0, 3, 2)])
    assert idx.lookup(1, 1, at(2)).trace_id[0] == 2
    assert idx.lookup(1, 1, at(5)).trace_id[0] == 1


def test_a_long_span_is_found_past_many_short_ones() -> None:
    idx, _, _ = index(max_spans=10_000)
    idx.add(
        [span(1, 1, 0, 9, 200)] + [span(1, 1, i / 1000, i / 1000 + 0.0005, 1) for i in range(5000)]
    )
    assert idx.lookup(1, 1, at(6)).trace_id[0] == 200
    assert idx.lookup(1, 1, at(1.0002)).trace_id[0] == 1


def test_pid_only_when_exactly_one_span_is_open() -> None:
    idx, _, _ = index()
    idx.add([span(5, NO_THREAD, 0, 4, 1), span(5, NO_THREAD, 2, 6, 2)])
    assert idx.lookup(5, 77, at(1)).trace_id[0] == 1  # only one open: any thread of pid 5
    assert idx.lookup(5, 78, at(5)).trace_id[0] == 2
    assert idx.lookup(5, 77, at(3)) is None  # two open at once: no link
    assert idx.lookup(6, 77, at(1)) is None


def test_thread_spans_before_pid_only_spans() -> None:
    idx, _, _ = index()
    idx.add([span(5, NO_THREAD, 0, 10, 1), span(5, 7, 2, 3, 2)])
    assert idx.lookup(5, 7, at(2.5)).trace_id[0] == 2
    assert idx.lookup(5, 8, at(2.5)).trace_id[0] == 1
    assert idx.lookup(5, 7, at(5)).trace_id[0] == 1


def test_bounded_by_max_spans_oldest_first() -> None:
    idx, counts, _ = index(max_spans=100)
    for i in range(250):
        idx.add([span(1, 1, i, i + 0.5, i % 250)])
    assert len(idx) == 100 and idx.peak_spans == 100
    assert counts["spans_evicted_full"] == 150
    assert idx.lookup(1, 1, at(10.2)) is None  # evicted
    assert idx.lookup(1, 1, at(249.2)) is not None


def test_expires_by_span_end() -> None:
    idx, counts, clock = index(retention=5)
    idx.add([span(1, 1, 0, 1, 1), span(1, 1, 8, 9, 2)])  # now = 10 s
    assert counts.get("spans_too_old") == 1  # ended at 1 s, 9 s before now
    clock[0] = at(13.9)
    idx.expire()
    assert len(idx) == 1
    clock[0] = at(14.1)
    idx.expire()
    assert len(idx) == 0 and counts["spans_expired"] == 1
    assert idx.lookup(1, 1, at(8.5)) is None


def test_many_threads_memory_is_released() -> None:
    idx, _, clock = index(retention=5)
    idx.add([span(1, t, 9, 9.5, 1) for t in range(1000)])
    assert len(idx) == 1000
    clock[0] = at(20)
    idx.expire()
    assert len(idx) == 0 and not idx._threads and not idx._longest


def _request(pid: object, tid: object | None, n: int = 2) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    if pid is not None:
        kv = rs.resource.attributes.add()
        kv.key = "process.pid"
        if isinstance(pid, int):
            kv.value.int_value = pid
        else:
            kv.value.string_value = str(pid)
    ss = rs.scope_spans.add()
    for i in range(n):
        sp = ss.spans.add()
        sp.trace_id = os.urandom(16)
        sp.span_id = os.urandom(8)
        sp.name = f"op{i}"
        sp.start_time_unix_nano = at(i)
        sp.end_time_unix_nano = at(i + 0.5)
        if tid is not None:
            kv = sp.attributes.add()
            kv.key = "thread.id"
            kv.value.int_value = int(tid)  # type: ignore[call-overload]
    return req.SerializeToString()


def test_decode_reads_pid_thread_and_keeps_the_bytes() -> None:
    body = _request(123, 456)
    b = decode_traces(body, "otlp")
    assert b.payload == body and b.span_count == 2 and b.without_pid == 0
    assert [(s.pid, s.tid, s.name) for s in b.spans] == [(123, 456, "op0"), (123, 456, "op1")]
    assert b.spans[0].start_ns == at(0) and b.spans[0].end_ns == at(0.5)
    first = decode_traces(_request("77", None)).spans[0]
    assert (first.pid, first.tid) == (77, NO_THREAD)


def test_decode_counts_spans_without_pid() -> None:
    b = decode_traces(_request(None, 5, n=3))
    assert b.span_count == 3 and b.without_pid == 3 and b.spans == ()


def test_decode_refuses_garbage() -> None:
    from google.protobuf.message import DecodeError

    with pytest.raises(DecodeError):
        decode_traces(b"\xff\xff\xff")


def test_indexed_spans_are_not_walked_by_the_cyclic_gc() -> None:
    import gc

    idx, _, _ = index()
    idx.add([span(1, t % 4, 9, 9.5, 1) for t in range(100)])
    gc.collect()
    gc.collect()  # a tuple is untracked once what it holds is: nested ones take two passes
    assert not any(gc.is_tracked(e) for lst in idx._threads.values() for e in lst)
    assert not any(gc.is_tracked(x) for x in idx._fifo)
