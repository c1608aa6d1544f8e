"""The collector's own process is not sampled unless asked (profile_self, or pids naming it).

Ground truth: the receiver runs in this process while a thread of it spins for a second; a
sample is this process's exactly when its pid is os.getpid() (no PID namespace here).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import pytest

from collector.component import CreateSettings
from collector.host import Host
from receivers.cpu import factory
from receivers.cpu.config import CpuConfig
from tests.receivers.cpu.test_receiver import ListConsumer

pytestmark = pytest.mark.bpf


def _spin(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pass


async def _own_samples(config: CpuConfig) -> tuple[int, int]:
    consumer, host = ListConsumer(), Host()
    receiver = factory.create(
        CreateSettings(id="cpu", logger=logging.getLogger("test"), consumer=consumer), config
    )
    await receiver.start(host)
    try:
        await asyncio.to_thread(_spin, 1.0)
        await asyncio.sleep(0.3)
    finally:
        await receiver.shutdown()
    own = sum(1 for s in consumer.samples if s.pid == os.getpid())
    return own, int(host.counters.snapshot().get("cpu", {}).get("self_skipped", 0))


@pytest.mark.parametrize(
    "settings",
    [{}, {"profile_self": True}, {"pids": [os.getpid()]}],
    ids=["default", "profile_self", "pids_name_it"],
)
def test_own_process_sampled_only_when_asked(settings: dict) -> None:
    config = CpuConfig(frequency=99, drain_interval=0.2, unwind="frame_pointers", **settings)
    own, skipped = asyncio.run(_own_samples(config))
    if settings:
        # a second of one spinning thread at 99 Hz: about 99 samples
        assert own >= 50 and skipped == 0, (own, skipped)
    else:
        assert own == 0 and skipped >= 50, (own, skipped)
