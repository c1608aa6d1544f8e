"""A reader that dies or keeps failing is a component failure, never a silent stop.

Faults are injected into a real cpu receiver (its BPF program loaded, sampling the real
kernel into a real ring buffer) by wrapping its ring buffer's ``poll`` or ``drain``: after N
good calls they raise, while the program runs on.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import pytest

from collector.bpf import stack_receiver
from collector.component import CreateSettings
from collector.host import Host
from collector.model import RawBatch
from receivers.cpu import factory
from receivers.cpu.config import CpuConfig
from tests.support.ring_faults import fail_ring

pytestmark = pytest.mark.bpf

WAIT_S = 60.0  # only so that a broken test cannot hang; nothing here is timed


class Consumer:
    def __init__(self) -> None:
        self.batches: list[RawBatch] = []
        self.got = threading.Event()

    def consume(self, batch: RawBatch) -> bool:
        self.batches.append(batch)
        if batch.samples:
            self.got.set()
        return True

    @property
    def samples(self) -> int:
        return sum(len(b.samples) for b in self.batches)


class Run:
    """One real receiver with a fault armed on its ring buffer after the first samples."""

    def __init__(self, config: CpuConfig) -> None:
        self.consumer = Consumer()
        self.host = Host()
        self.fatal: list[tuple[str, str]] = []
        self.fatal_called = threading.Event()
        self.host.on_fatal(self._on_fatal)
        self.receiver = factory.create(
            CreateSettings("cpu", logging.getLogger("test.cpu"), self.consumer), config
        )

    def _on_fatal(self, component: str, message: str) -> None:
        self.fatal.append((component, message))
        self.fatal_called.set()

    def counters(self) -> dict[str, int]:
        return self.host.counters.snapshot().get("cpu", {})

    def arm(self, method: str, fail: Callable[[int], bool]) -> None:
        """Wrap the live ring buffer's ``method``: call n (from 1) raises when fail(n)."""
        fail_ring(self.receiver, method, fail)

    async def start_and_wait_for_samples(self) -> None:
        await self.receiver.start(self.host)
        assert await asyncio.to_thread(self.consumer.got.wait, WAIT_S), "no samples at all"


def _reader_alive(run: Run) -> bool:
    return run.receiver._thread is not None and run.receiver._thread.is_alive()


def _failure_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "receiver failed" in r.getMessage()]


def test_poll_failure_reports_fatal_with_its_cause(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def main() -> Run:
        run = Run(CpuConfig(frequency=199, include_idle=True, drain_interval=0.2))
        await run.start_and_wait_for_samples()
        before = run.consumer.samples

        def third_fails_late(n: int) -> bool:
            if n > 2:  # the ring fills meanwhile (about 80 events): they are never read
                time.sleep(0.2)
            return n > 2

        run.arm("poll", third_fails_late)
        assert await asyncio.to_thread(run.fatal_called.wait, WAIT_S)
        await asyncio.to_thread(run.receiver._thread.join, WAIT_S)
        assert not _reader_alive(run)
        await asyncio.sleep(0.05)  # the batch read before the failure, handed over
        assert run.consumer.samples > before
        await run.receiver.shutdown()
        await run.receiver.shutdown()
        return run

    run = asyncio.run(main())
    assert len(run.fatal) == 1
    component, message = run.fatal[0]
    assert component == "cpu"
    assert message == "reader failed: OSError: [Errno 5] injected poll failure 3"
    assert run.host.fatal_error == f"cpu: {message}"
    [record] = _failure_logs(caplog)  # once, with its traceback
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "injected poll failure 3" in record.getMessage()
    counters = run.counters()
    assert counters["receiver_failed"] == 1
    assert counters.get("reader_errors", 0) == 0
    # After the failure the ring is not read again: what it still held is counted.
    assert counters.get("events_unread", 0) > 0
    assert all(m.fd == -1 for m in run.receiver._prog.maps.values())  # every fd released


def test_drains_failing_in_a_row_are_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def main() -> Run:
        run = Run(CpuConfig(frequency=199, include_idle=True, drain_interval=0.2))
        await run.start_and_wait_for_samples()
        run.arm("drain", lambda n: n > 3)
        assert await asyncio.to_thread(run.fatal_called.wait, WAIT_S)
        await run.receiver.shutdown()
        return run

    run = asyncio.run(main())
    [(_, message)] = run.fatal
    assert message == (
        "reader failed: OSError: [Errno 5] injected drain failure 8"
        f" ({stack_receiver.MAX_FAILED_DRAINS} drains in a row)"
    )
    assert run.counters()["reader_errors"] == stack_receiver.MAX_FAILED_DRAINS
    assert run.counters()["receiver_failed"] == 1
    assert len(_failure_logs(caplog)) == 1
    retrying = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retrying) == 1  # the first transient error, one line
    assert "injected drain failure 4" in retrying[0].getMessage()
    # The cause's traceback is logged once, with the failure.
    assert sum(r.exc_info is not None for r in caplog.records) == 1


def test_a_transient_drain_error_only_counts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def main() -> tuple[Run, int]:
        run = Run(CpuConfig(frequency=199, include_idle=True, drain_interval=0.2))
        await run.start_and_wait_for_samples()
        run.arm("drain", lambda n: n in (2, 5, 6))  # never 5 in a row
        while run.counters().get("reader_errors", 0) < 3:
            await asyncio.sleep(0.1)
        after_errors = run.consumer.samples
        run.consumer.got.clear()
        assert await asyncio.to_thread(run.consumer.got.wait, WAIT_S)  # still reading
        await run.receiver.shutdown()
        return run, after_errors

    run, after_errors = asyncio.run(main())
    assert run.consumer.samples > after_errors
    assert not run.fatal and run.host.fatal_error is None
    assert run.counters()["reader_errors"] == 3
    assert "receiver_failed" not in run.counters()
    assert not _failure_logs(caplog)


def test_an_optional_receiver_fails_alone(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)

    async def main() -> Run:
        run = Run(CpuConfig(frequency=199, include_idle=True, drain_interval=0.2, optional=True))
        await run.start_and_wait_for_samples()
        run.arm("poll", lambda n: n > 1)
        while "receiver_failed" not in run.counters():
            await asyncio.sleep(0.05)
        await asyncio.to_thread(run.receiver._thread.join, WAIT_S)
        # Its program is detached and its fds are closed at once, not at shutdown.
        prog = run.receiver._prog
        assert all(a["fd"] == -1 for a in prog.attachments)
        assert all(m.fd == -1 for m in prog.maps.values())
        await run.receiver.shutdown()
        return run

    run = asyncio.run(main())
    assert not run.fatal and run.host.fatal_error is None
    assert run.counters()["receiver_failed"] == 1
    [record] = _failure_logs(caplog)
    assert "optional=True" in record.getMessage() and record.exc_info is not None
