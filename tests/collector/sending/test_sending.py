"""Sending machinery: durations, backoff, retry budget, bounded queue."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import ValidationError

from collector.sending import (
    Backoff,
    PermanentError,
    QueueItem,
    RetryableError,
    RetrySettings,
    SendingQueue,
    send_with_retry,
)
from collector.sending.rpc_status import Status, retry_delay_from_status, status_with_retry_delay
from collector.sending.settings import ProfilesExporterConfig


def test_durations_and_defaults() -> None:
    r = RetrySettings.model_validate({"initial_interval": "500ms", "max_interval": "1m"})
    assert r.initial_interval == 0.5 and r.max_interval == 60.0
    assert RetrySettings().max_elapsed_time == 300.0
    with pytest.raises(ValidationError, match="not a duration"):
        RetrySettings.model_validate({"initial_interval": "5 parsecs"})
    with pytest.raises(ValidationError, match="Extra inputs"):
        RetrySettings.model_validate({"intial_interval": "1s"})


def test_secret_headers_redacted() -> None:
    c = ProfilesExporterConfig(endpoint="x:1", headers={"Authorization": "Bearer abc123"})
    assert "abc123" not in repr(c) and "abc123" not in c.model_dump_json()
    assert c.header_items() == [("authorization", "Bearer abc123")]


def test_backoff_grows_with_jitter_and_caps() -> None:
    s = RetrySettings(initial_interval=1, max_interval=4, multiplier=2, randomization_factor=0.5)
    lo = Backoff(s, rand=lambda: 0.0)
    assert [lo.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 2.0, 2.0]
    hi = Backoff(s, rand=lambda: 0.999999)
    assert [round(hi.next_delay(), 3) for _ in range(4)] == [1.5, 3.0, 6.0, 6.0]


def test_retry_stops_at_budget_and_never_retries_permanent() -> None:
    # The budget is judged on the clock send_with_retry is given: here one that advances by
    # exactly the waits it asked for, so the count does not depend on the machine's load.
    waited = [0.0]
    calls: list[float] = []

    async def flaky() -> None:
        calls.append(waited[0])
        raise RetryableError("down")

    def on_retry(e: RetryableError, delay: float) -> None:
        waited[0] += delay

    s = RetrySettings(
        initial_interval=0.0625, max_interval=0.0625, max_elapsed_time=0.25, randomization_factor=0
    )
    with pytest.raises(RetryableError):
        asyncio.run(send_with_retry(flaky, s, on_retry=on_retry, clock=lambda: waited[0]))
    # Attempts at 0, 1/16, 2/16, 3/16, 4/16 s; a fifth wait would end past the 0.25 s budget.
    assert calls == [0.0, 0.0625, 0.125, 0.1875, 0.25]

    calls.clear()

    async def bad() -> None:
        calls.append(1)
        raise PermanentError("400")

    with pytest.raises(PermanentError):
        asyncio.run(send_with_retry(bad, s))
    assert calls == [1]

    calls.clear()
    with pytest.raises(RetryableError):
        asyncio.run(send_with_retry(flaky, RetrySettings(enabled=False)))
    assert len(calls) == 1


def test_queue_drops_when_full_and_reports_unsent() -> None:
    async def main() -> None:
        gate = asyncio.Event()
        sent: list[int] = []

        async def send(item: QueueItem) -> None:
            await gate.wait()
            sent.append(item.samples)

        q = SendingQueue(2, 1, send, logging.getLogger("t"))
        q.start()
        assert q.offer(QueueItem(b"", 1))
        await asyncio.sleep(0)  # the worker takes item 1
        assert q.in_flight == 1
        assert q.offer(QueueItem(b"", 2)) and q.offer(QueueItem(b"", 3))
        assert not q.offer(QueueItem(b"", 4))  # full: refused at once, never blocks
        unsent = await q.shutdown(0.1)
        assert sorted(i.samples for i in unsent) == [1, 2, 3]
        assert sent == []
        assert not q.offer(QueueItem(b"", 5))

    asyncio.run(main())


def test_rpc_status_retry_info_round_trip_and_garbage() -> None:
    blob = status_with_retry_delay(14, "unavailable", 1.5)
    st = Status.FromString(blob)
    assert (st.code, st.message) == (14, "unavailable")
    assert st.details[0].type_url == "type.googleapis.com/google.rpc.RetryInfo"
    assert retry_delay_from_status(blob) == 1.5
    assert retry_delay_from_status(Status(code=14).SerializeToString()) is None  # no RetryInfo
    assert retry_delay_from_status(b"\xff\xff\xff") is None  # not a Status: no crash
