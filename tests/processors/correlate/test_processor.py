"""The correlate processor on its own: it holds batches without blocking, releases them by
time through the pipeline's emit callback, links with spans that arrived meanwhile, bounds
what it holds, and hands everything on at shutdown."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from collector.component import CreateSettings
from collector.host import Host
from collector.model import ProcessInfo, Sample, Stack, SymbolizedBatch, cpu_profile_type
from collector.spans import HUB_KEY, Span, SpanBatch, SpanHub
from processors.correlate import CorrelateConfig, CorrelateProcessor

T0 = time.time_ns()
MS = 1_000_000
PROC = ProcessInfo(4242, "app")


@pytest.fixture(autouse=True)
def _fresh_t0() -> None:
    """Times are near "now" for each test: a module-level stamp taken at collection is
    minutes old by the time a full suite reaches these tests, and the index expires spans
    older than its retention (the tests failed that way in a whole-suite run)."""
    global T0
    T0 = time.time_ns()


def sample(tid: int, t_ms: int) -> Sample:
    return Sample(Stack(()), PROC, tid, 0, "app", T0 + t_ms * MS, 1)


def batch(*samples: Sample) -> SymbolizedBatch:
    return SymbolizedBatch(cpu_profile_type(99), list(samples))


def spans(*items: tuple[int, int, int, int]) -> SpanBatch:
    out = tuple(
        Span(PROC.pid, tid, T0 + a * MS, T0 + b * MS, bytes([n]) * 16, bytes([n]) * 8, f"op{n}")
        for tid, a, b, n in items
    )
    return SpanBatch(b"", out, len(out))


RELEASED: list[float] = []  # when each batch was emitted (time.monotonic)


async def started(**cfg: object) -> tuple[CorrelateProcessor, Host, list[SymbolizedBatch]]:
    out: list[SymbolizedBatch] = []

    async def emit(b: SymbolizedBatch) -> None:
        RELEASED.append(time.monotonic())
        out.append(b)

    settings = CreateSettings("correlate", logging.getLogger("t"), None, emit)
    proc = CorrelateProcessor(settings, CorrelateConfig.model_validate(cfg))
    host = Host()
    await proc.start(host)
    return proc, host, out


def test_holds_then_links_with_spans_that_came_later() -> None:
    async def main() -> None:
        proc, host, out = await started(max_delay="0.3s")
        b = batch(sample(7, 10), sample(7, 50), sample(8, 10))
        t = time.monotonic()
        assert await proc.process(b) is None  # held: the pipeline loop goes on
        hub = host.shared(HUB_KEY, SpanHub)
        assert hub.publish(spans((7, 0, 20, 1), (8, 30, 40, 2))) == 1  # after the samples
        for _ in range(600):  # a hang guard, not a speed expectation
            if out:
                break
            await asyncio.sleep(0.05)
        assert len(out) == 1 and RELEASED[-1] - t >= 0.3  # held at least max_delay
        got = out[0].samples
        assert [s.span_id[:1] for s in got] == [b"\x01", b"", b""]
        assert got[0].trace_id == bytes([1]) * 16 and got[0].span_name == "op1"
        assert b.samples[0].trace_id == b""  # the input batch (maybe shared) is untouched
        c = host.counters.snapshot()["correlate"]
        assert c["samples_linked"] == 1 and c["samples_unlinked"] == 2
        await proc.shutdown()
        host.release(HUB_KEY)

    asyncio.run(main())


def test_releases_in_order_and_flushes_at_shutdown() -> None:
    async def main() -> None:
        proc, _host, out = await started(max_delay="20s")
        for i in range(5):
            assert await proc.process(batch(sample(1, i))) is None
        assert out == []
        await proc.shutdown()
        assert [b.samples[0].time_ns for b in out] == [T0 + i * MS for i in range(5)]
        await proc.shutdown()  # idempotent
        assert len(out) == 5

    asyncio.run(main())


def test_bounded_by_max_held_samples() -> None:
    async def main() -> None:
        proc, host, out = await started(max_delay="20s", max_held_samples=4)
        assert await proc.process(batch(sample(1, 1), sample(1, 2), sample(1, 3))) is None
        passed = await proc.process(batch(sample(1, 4), sample(1, 5)))  # would be 5 held
        assert passed is not None and len(passed.samples) == 2
        assert host.counters.snapshot()["correlate"]["samples_held_over_limit"] == 2
        await proc.shutdown()
        assert len(out) == 1

    asyncio.run(main())


def test_outside_a_pipeline_links_at_once() -> None:
    async def main() -> None:
        settings = CreateSettings("correlate", logging.getLogger("t"))
        proc = CorrelateProcessor(settings, CorrelateConfig())
        host = Host()
        await proc.start(host)
        host.shared(HUB_KEY, SpanHub).publish(spans((3, 0, 100, 9)))
        got = await proc.process(batch(sample(3, 50)))
        assert got is not None and got.samples[0].span_id == bytes([9]) * 8
        await proc.shutdown()

    asyncio.run(main())


def test_two_processors_with_equal_settings_share_one_index() -> None:
    async def main() -> None:
        host = Host()
        procs = []
        for name in ("correlate/a", "correlate/b"):
            settings = CreateSettings(name, logging.getLogger("t"))
            p = CorrelateProcessor(settings, CorrelateConfig())
            await p.start(host)
            procs.append(p)
        hub = host.shared(HUB_KEY, SpanHub)
        assert hub.publish(spans((3, 0, 100, 9))) == 1  # one index subscribed
        for p in procs:
            got = await p.process(batch(sample(3, 50)))
            assert got.samples[0].span_id == bytes([9]) * 8
        for p in procs:
            await p.shutdown()
        assert hub.subscribers == 0

    asyncio.run(main())
