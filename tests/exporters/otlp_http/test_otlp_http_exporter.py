"""The otlp_http exporter against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time

import pytest

from collector.host import Host
from exporters.otlp_http import factory
from exporters.otlp_http.transport import parse_retry_after
from tests.support.otlp_fixtures import make_batches
from tests.support.otlp_run import create, fast_retry
from tests.support.otlp_servers import Answer, HttpProfilesServer, Recorder


async def _run(rec: Recorder, n: int = 100, **over: object) -> tuple[Host, float]:
    srv = HttpProfilesServer(rec)
    await srv.start()
    cfg = {
        "endpoint": f"http://127.0.0.1:{srv.port}",
        "interval": "1h",
        "headers": {"X-Scope-OrgID": "t1"},
        "retry_on_failure": fast_retry(),
    }
    cfg.update(over)
    exp = create(factory, cfg)
    host = Host()
    await exp.start(host)
    for b in make_batches(n, batch_size=100):
        await exp.export(b)
    t0 = time.monotonic()
    await exp.shutdown()
    took = time.monotonic() - t0
    await srv.stop()
    return host, took


def test_posts_valid_gzip_protobuf() -> None:
    rec = Recorder()
    host, _ = asyncio.run(_run(rec, 1000))
    assert host.counters.get("otlp_http", "sent_samples") == 1000
    assert rec.samples == 1000 and rec.problems == [[]]
    h = rec.metadata[0]
    assert h["content-type"] == "application/x-protobuf"
    assert h["content-encoding"] == "gzip"
    assert h["x-scope-orgid"] == "t1"


def test_no_compression() -> None:
    rec = Recorder()
    asyncio.run(_run(rec, 100, compression="none"))
    assert rec.samples == 100 and "content-encoding" not in rec.metadata[0]


def test_429_retry_after_seconds_is_honoured() -> None:
    rec = Recorder(script=[Answer(http_status=429, retry_delay=1)])
    host, took = asyncio.run(_run(rec))
    assert rec.attempts == 2 and rec.samples == 100
    assert host.counters.get("otlp_http", "retries") == 1
    assert took >= 0.95, took  # backoff alone is ~10 ms


def test_503_retry_after_http_date_is_honoured() -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    rec = Recorder(script=[Answer(http_status=503, retry_after_header=when)])
    _, took = asyncio.run(_run(rec))
    assert rec.attempts == 2 and rec.samples == 100
    assert took >= 0.9, took  # an HTTP date has 1 s resolution


def test_400_is_permanent() -> None:
    rec = Recorder(script=[Answer(http_status=400)])
    host, _ = asyncio.run(_run(rec))
    assert rec.attempts == 1
    assert host.counters.get("otlp_http", "failed_samples_permanent") == 100
    assert host.counters.get("otlp_http", "retries") == 0


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = 1_700_000_000.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0


def test_unreadable_success_body_is_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # 0xff is not a valid protobuf tag: the server said 200, but what did it take?
    rec = Recorder(script=[Answer(http_body=b"\xff\xff not protobuf")] * 3)
    with caplog.at_level(logging.WARNING):
        host, _ = asyncio.run(_run(rec, 300, max_batch_samples=100))
    assert rec.attempts == 3
    assert host.counters.get("otlp_http", "responses_unreadable") == 3
    assert host.counters.get("otlp_http", "sent_samples") == 300  # the server took them
    lines = [r for r in caplog.records if "responses_unreadable" in r.getMessage()]
    assert len(lines) == 1 and "not an ExportProfilesServiceResponse" in lines[0].getMessage()


def test_unreadable_retry_after_is_counted_and_backoff_decides() -> None:
    rec = Recorder(script=[Answer(http_status=503, retry_after_header="soon")] * 2)
    host, _ = asyncio.run(_run(rec))
    assert rec.attempts == 3 and rec.samples == 100
    assert host.counters.get("otlp_http", "retry_after_unreadable") == 2
    assert host.counters.get("otlp_http", "retries") == 2
