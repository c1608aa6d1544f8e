"""Sample timestamps against wall-clock spans: the BPF receivers stamp events with
CLOCK_BOOTTIME and convert with CLOCK_REALTIME - CLOCK_BOOTTIME read at every drain. A
wall-clock step (NTP, a resumed VM) therefore shows in sample times within one drain, and no
drift accumulates over hours. Here the real cpu receiver runs while CLOCK_REALTIME, as the
receiver reads it, steps forward by an hour; CLOCK_BOOTTIME goes on as it was."""

from __future__ import annotations

import asyncio
import logging
import sys
import time

import pytest

from collector.bpf import stack_receiver
from collector.component import CreateSettings
from collector.host import Host
from receivers.cpu import factory
from receivers.cpu.config import CpuConfig

pytestmark = pytest.mark.bpf

STEP_NS = 3600 * 1_000_000_000
DRAIN_S = 0.5
BUSY = (
    "import ctypes, time; ctypes.CDLL(None).prctl(15, b'clockstep', 0, 0, 0)\n"
    "end = time.monotonic() + 7\n"
    "while time.monotonic() < end: pass\n"
)


def real_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_REALTIME)


class Arrivals:
    """Each batch with the real wall-clock time it arrived at."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, list[int]]] = []

    def consume(self, batch: object) -> bool:
        self.batches.append((real_ns(), [s.time_ns for s in batch.samples]))  # type: ignore[attr-defined]
        return True


def test_a_wall_clock_step_is_followed_within_one_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> tuple[Arrivals, int]:
        arrivals = Arrivals()
        cfg = CpuConfig.model_validate(
            {"frequency": 199, "comm": "^clockstep", "drain_interval": DRAIN_S}
        )
        rcv = factory.create(CreateSettings("cpu", logging.getLogger("t"), arrivals), cfg)
        await rcv.start(Host())
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", BUSY)
        await asyncio.sleep(2.5)
        stepped_at = real_ns()
        monkeypatch.setattr(stack_receiver.time, "time_ns", lambda: real_ns() + STEP_NS)
        await proc.wait()
        await asyncio.sleep(2 * DRAIN_S)
        await rcv.shutdown()
        return arrivals, stepped_at

    arrivals, stepped_at = asyncio.run(main())
    slack = int((DRAIN_S + 1.0) * 1e9)  # an event waits at most one drain (plus scheduling)
    before = after = 0
    for arrived, times in arrivals.batches:
        if not times:
            continue
        if arrived < stepped_at:
            before += len(times)
            assert all(arrived - slack <= t <= arrived for t in times)
        elif arrived > stepped_at + slack:
            after += len(times)
            assert all(arrived + STEP_NS - slack <= t <= arrived + STEP_NS for t in times)
    assert before >= 50 and after >= 50, (before, after)
