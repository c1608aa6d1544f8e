"""Backend outage: the gateway goes away and comes back; nothing within the queue's capacity
is lost and what overflows is counted exactly."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from collector.host import Host
from exporters.otlp import factory
from tests.support.otlp_fixtures import make_batches
from tests.support.otlp_run import create
from tests.support.otlp_servers import GrpcProfilesServer, Recorder, free_port

# The issue asks for a 30 s outage; OTLP_OUTAGE_SECONDS shortens it for quick local runs.
OUTAGE = float(os.environ.get("OTLP_OUTAGE_SECONDS", "30"))
QUEUE = 5
PER_REQUEST = 10


@pytest.mark.slow
@pytest.mark.timeout(OUTAGE + 120)
def test_outage_loses_nothing_within_queue_and_counts_overflow() -> None:
    async def main() -> None:
        port = free_port()
        rec = Recorder()
        srv = GrpcProfilesServer(rec, port=port)
        await srv.start()
        exp = create(
            factory,
            {
                "endpoint": f"127.0.0.1:{port}",
                "tls": {"insecure": True},
                "interval": "1h",
                "timeout": "1s",
                "sending_queue": {"queue_size": QUEUE},
                "retry_on_failure": {
                    "initial_interval": "200ms",
                    "max_interval": "1s",
                    "max_elapsed_time": f"{OUTAGE + 60}s",
                },
            },
        )
        host = Host()
        await exp.start(host)
        batches = make_batches(PER_REQUEST * (QUEUE + 4), batch_size=PER_REQUEST)
        await exp.export(batches[0])
        await exp.flush()
        while not rec.requests:
            await asyncio.sleep(0.01)
        await srv.stop()  # the outage starts
        t_down = time.monotonic()
        # One request goes in flight (retrying), QUEUE wait in the queue, the rest overflow.
        await exp.export(batches[1])
        await exp.flush()
        while exp._queue.in_flight == 0:
            await asyncio.sleep(0.01)
        for b in batches[2:]:
            await exp.export(b)
            await exp.flush()
        overflow = len(batches) - 2 - QUEUE
        assert host.counters.get("otlp", "dropped_requests_queue_full") == overflow
        assert host.counters.get("otlp", "dropped_samples_queue_full") == overflow * PER_REQUEST
        await asyncio.sleep(max(OUTAGE - (time.monotonic() - t_down), 0))
        srv = GrpcProfilesServer(rec, port=port)
        await srv.start()  # the gateway is back
        want = (len(batches) - overflow) * PER_REQUEST
        deadline = time.monotonic() + 30
        while rec.samples < want and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await exp.shutdown()
        await srv.stop()
        assert rec.samples == want
        assert host.counters.get("otlp", "sent_samples") == want
        assert host.counters.get("otlp", "dropped_samples_shutdown") == 0
        assert host.counters.get("otlp", "failed_samples_retries_exhausted") == 0
        assert all(p == [] for p in rec.problems)

    asyncio.run(main())
