"""The otlp exporter against a real grpc.aio ProfilesService on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)

from collector.host import Host
from collector.model import ProfileBuilder
from collector.otlp import decode_request
from exporters.otlp import factory
from tests.support.otlp_fixtures import batch_shares, function_shares, make_batches
from tests.support.otlp_run import create, fast_retry
from tests.support.otlp_servers import Answer, GrpcProfilesServer, Recorder


def _exporter(port: int, **over: object):
    cfg = {
        "endpoint": f"127.0.0.1:{port}",
        "tls": {"insecure": True},
        "interval": "1h",
        "retry_on_failure": fast_retry(),
    }
    cfg.update(over)
    return create(factory, cfg)


async def _send(exp, batches, flush_each: bool = False) -> Host:
    host = Host()
    await exp.start(host)
    for b in batches:
        await exp.export(b)
        if flush_each:
            await exp.flush()
    await exp.shutdown()
    return host


def _resources(req: ExportProfilesServiceRequest) -> list[dict[str, object]]:
    out = []
    for rp in req.resource_profiles:
        a = {}
        for kv in rp.resource.attributes:
            a[kv.key] = getattr(kv.value, kv.value.WhichOneof("value"))
        out.append(a)
    return out


def test_round_trip_valid_and_shares_survive() -> None:
    async def main() -> None:
        rec = Recorder()
        srv = GrpcProfilesServer(rec)
        await srv.start()
        batches = make_batches(5000, pids=3)
        host = await _send(_exporter(srv.port), batches)
        await srv.stop()
        assert rec.requests, "nothing reached the server"
        assert rec.problems == [[]] * len(rec.requests)
        assert host.counters.get("otlp", "sent_samples") == 5000
        assert rec.samples == 5000
        # Decode what the server got, rebuild the one model, and compare function shares.
        out = [b for r in rec.requests for b in decode_request(r)]
        b = ProfileBuilder(out[0].profile_type)
        for batch in out:
            b.add_all(batch.samples)
        got = function_shares(b.build())
        want = batch_shares(batches)
        assert got.keys() == want.keys()
        for k in want:
            assert got[k] == pytest.approx(want[k], abs=1e-12), k
        res = _resources(rec.requests[0])
        assert len(res) == 3  # one ResourceProfiles per process
        by_pid = {r["process.pid"]: r for r in res}
        assert by_pid[101]["service.name"] == "app1"
        assert by_pid[101]["process.executable.path"] == "/usr/bin/app1"
        assert by_pid[101]["process.executable.build_id.gnu"] == "ab" * 20
        assert by_pid[101]["container.id"] == "c" * 64
        assert "container.id" not in by_pid[100]
        d = rec.requests[0].dictionary
        frame_types = {
            d.attribute_table[i].value.string_value
            for loc in d.location_table
            for i in loc.attribute_indices
        }
        assert frame_types == {"kernel", "native", "go"}

    asyncio.run(main())


def test_service_name_setting_and_profile_fields() -> None:
    async def main() -> None:
        rec = Recorder()
        srv = GrpcProfilesServer(rec)
        await srv.start()
        await _send(_exporter(srv.port, service_name="checkout"), make_batches(300))
        await srv.stop()
        req = rec.requests[0]
        st = req.dictionary.string_table
        ids = set()
        for rp in req.resource_profiles:
            assert _resources(req)[0]["service.name"] == "checkout"
            prof = rp.scope_profiles[0].profiles[0]
            assert (st[prof.sample_type.type_strindex], st[prof.sample_type.unit_strindex]) == (
                "samples",
                "count",
            )
            assert (st[prof.period_type.type_strindex], st[prof.period_type.unit_strindex]) == (
                "cpu",
                "nanoseconds",
            )
            assert prof.period == 1_000_000_000 // 99
            assert len(prof.profile_id) == 16
            ids.add(prof.profile_id)
        assert len(ids) == len(req.resource_profiles)  # random, not repeated

    asyncio.run(main())


def test_unavailable_twice_then_ok_honours_retry_info() -> None:
    async def main() -> None:
        rec = Recorder(script=[Answer("UNAVAILABLE", retry_delay=0.4)] * 2)
        srv = GrpcProfilesServer(rec)
        await srv.start()
        exp = _exporter(srv.port)
        host = Host()
        await exp.start(host)
        await exp.export(make_batches(100)[0])
        t0 = time.monotonic()
        await exp.flush()
        while host.counters.get("otlp", "sent_samples") < 100 and time.monotonic() - t0 < 10:
            await asyncio.sleep(0.02)
        took = time.monotonic() - t0
        await exp.shutdown()
        await srv.stop()
        assert rec.attempts == 3
        assert host.counters.get("otlp", "retries") == 2
        assert host.counters.get("otlp", "sent_samples") == 100
        # The backoff alone would wait ~20 ms; the server asked for 0.4 s twice.
        assert took >= 0.8, took

    asyncio.run(main())


def test_resource_exhausted_is_retried() -> None:
    async def main() -> None:
        rec = Recorder(script=[Answer("RESOURCE_EXHAUSTED")])
        srv = GrpcProfilesServer(rec)
        await srv.start()
        host = await _send(_exporter(srv.port), make_batches(50))
        await srv.stop()
        assert rec.attempts == 2
        assert host.counters.get("otlp", "sent_samples") == 50

    asyncio.run(main())


def test_invalid_argument_not_retried_counted_and_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        rec = Recorder(script=[Answer("INVALID_ARGUMENT")] * 2)
        srv = GrpcProfilesServer(rec)
        await srv.start()
        batches = make_batches(200, batch_size=100)
        host = await _send(_exporter(srv.port), batches, flush_each=True)
        await srv.stop()
        assert rec.attempts == 2  # two requests, one attempt each
        assert host.counters.get("otlp", "failed_samples_permanent") == 200
        assert host.counters.get("otlp", "failed_requests_permanent") == 2
        assert host.counters.get("otlp", "retries") == 0

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    lines = [r.getMessage() for r in caplog.records if "permanent error" in r.getMessage()]
    # The first failure of the class is written; the second, within the minute, is held
    # back and summed up once at shutdown.
    assert len(lines) == 2 and all("INVALID_ARGUMENT" in m for m in lines), lines
    assert "suppressed" not in lines[0] and "suppressed=1" in lines[1], lines


def test_partial_success_is_logged_with_counts(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        rec = Recorder(script=[Answer("OK", rejected=2)])
        srv = GrpcProfilesServer(rec)
        await srv.start()
        host = await _send(_exporter(srv.port), make_batches(100))
        await srv.stop()
        assert host.counters.get("otlp", "rejected_profiles") == 2

    with caplog.at_level(logging.INFO):
        asyncio.run(main())
    assert any("rejected_profiles=2" in r.getMessage() for r in caplog.records)


def test_interval_flush_without_shutdown() -> None:
    async def main() -> None:
        rec = Recorder()
        srv = GrpcProfilesServer(rec)
        await srv.start()
        exp = _exporter(srv.port, interval="200ms")
        host = Host()
        await exp.start(host)
        await exp.export(make_batches(100)[0])
        t0 = time.monotonic()
        while not rec.requests and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.02)
        assert rec.requests, "the interval did not flush"
        await exp.shutdown()
        await exp.shutdown()  # idempotent
        await srv.stop()

    asyncio.run(main())


def test_shutdown_without_start_is_safe() -> None:
    asyncio.run(_exporter(1).shutdown())


def test_shutdown_gives_up_after_timeout_and_counts_unsent() -> None:
    from tests.support.otlp_servers import free_port

    async def main() -> Host:
        port = free_port()  # nothing listens: every attempt is UNAVAILABLE
        exp = _exporter(
            port,
            shutdown_timeout="300ms",
            retry_on_failure=fast_retry(max_elapsed_time="60s"),
            sending_queue={"queue_size": 10},
        )
        host = Host()
        await exp.start(host)
        for b in make_batches(30, batch_size=10):
            await exp.export(b)
            await exp.flush()
        await exp.shutdown()
        return host

    host = asyncio.run(main())
    # Counted as left at shutdown, not as retries exhausted: shutdown stopped waiting after
    # its 300 ms instead of letting the 60 s of retries run out (without a stopwatch here).
    assert host.counters.get("otlp", "dropped_samples_shutdown") == 30
    assert host.counters.get("otlp", "failed_samples_retries_exhausted") == 0
    assert host.counters.get("otlp", "sent_samples") == 0
