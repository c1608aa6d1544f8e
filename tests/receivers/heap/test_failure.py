"""The heap receiver's reader failing, on the real kernel: the rules of collector/bpf/reader.py
(shared with cpu, offcpu and go_runtime) with per-process uprobes to release as well.

Faults are injected into the live ring buffer's poll/drain (tests/support/ring_faults.py);
everything else is the real program attached to tests/workloads/heap_leak.c.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from collector.bpf.reader import MAX_FAILED_DRAINS
from collector.component import CreateSettings
from collector.host import Host
from receivers.heap import factory
from receivers.heap.config import HeapConfig
from tests.receivers.heap.test_receiver import ListConsumer, go, start_workload, wait_until
from tests.support.ring_faults import fail_ring
from tests.support.workloads import build

pytestmark = pytest.mark.bpf
WAIT_S = 30.0


class Run:
    def __init__(self, optional: bool) -> None:
        self.wl = start_workload(build("heap_leak"), 1.0)
        self.consumer = ListConsumer()
        self.host = Host()
        self.fatal: list[tuple[str, str]] = []
        self.fatal_called = threading.Event()
        self.host.on_fatal(self._on_fatal)
        config = HeapConfig(
            pids=[self.wl.pid], sample_bytes=4096, interval=0.3, drain_interval=0.1,
            min_age=None, optional=optional,
        )  # fmt: skip
        self.rec = factory.create(
            CreateSettings("heap", logging.getLogger("t"), self.consumer), config
        )

    def _on_fatal(self, component: str, message: str) -> None:
        self.fatal.append((component, message))
        self.fatal_called.set()

    def counters(self) -> dict[str, int]:
        return self.host.counters.snapshot().get("heap", {})

    def stop(self) -> None:
        assert self.wl.stdin is not None
        self.wl.stdin.close()
        self.wl.wait()


def test_drains_failing_in_a_row_stop_the_collector_with_the_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    run = Run(optional=False)

    async def main() -> None:
        await run.rec.start(run.host)
        try:
            await asyncio.to_thread(go, run.wl)
            await wait_until(lambda: any(b.samples for b in run.consumer.batches))
            fail_ring(run.rec, "drain", lambda n: n > 2)
            assert await asyncio.to_thread(run.fatal_called.wait, WAIT_S)
        finally:
            await run.rec.shutdown()
            run.stop()

    asyncio.run(main())
    [(component, message)] = run.fatal
    assert component == "heap"
    assert message.startswith("reader failed: OSError: [Errno 5] injected drain failure ")
    assert message.endswith(f" ({MAX_FAILED_DRAINS} drains in a row)")
    counters = run.counters()
    assert counters["reader_errors"] == MAX_FAILED_DRAINS
    assert counters["receiver_failed"] == 1
    failed = [r for r in caplog.records if "heap receiver failed id=heap" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is not None
    retrying = [r for r in caplog.records if "heap receiver drain failed" in r.getMessage()]
    assert len(retrying) == 1  # the first transient error, one line
    # Shutdown after the failure still released every probe and fd.
    assert run.rec._probes.pids() == []
    assert all(m.fd == -1 for m in run.rec._prog.maps.values())


def test_an_optional_receiver_fails_alone_and_releases_its_probes_at_once() -> None:
    run = Run(optional=True)

    async def main() -> None:
        await run.rec.start(run.host)
        try:
            assert run.rec._probes.attached(run.wl.pid)
            await asyncio.to_thread(go, run.wl)
            fail_ring(run.rec, "poll", lambda n: n > 1)
            await wait_until(lambda: "receiver_failed" in run.counters())
            thread = run.rec._thread
            assert thread is not None
            await asyncio.to_thread(thread.join, WAIT_S)
            assert not thread.is_alive()
            # Released by the reader itself, before shutdown: uprobes, program, maps.
            assert run.rec._probes.pids() == []
            assert all(a["fd"] == -1 for a in run.rec._prog.attachments)
            assert all(m.fd == -1 for m in run.rec._prog.maps.values())
        finally:
            await run.rec.shutdown()
            await run.rec.shutdown()  # idempotent
            run.stop()

    asyncio.run(main())
    assert not run.fatal and run.host.fatal_error is None
    assert run.counters()["receiver_failed"] == 1
    assert any(b.samples for b in run.consumer.batches)  # what was read went on
