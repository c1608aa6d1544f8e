"""A receiver that floods the pipeline: ``batch_samples`` samples every ``interval``, each on
a stack never seen before (so deduplication keeps all of them), as a hostile load would.

It honours the collector's memory pressure the way a sampling receiver should: it scales its
batches by ``host.pressure.sampling_factor`` (half above the soft limit, none above the hard
one) unless ``honour_pressure`` is false. Counters: ``emitted_samples``, ``throttled_batches``.
"""

from __future__ import annotations

import asyncio
import itertools
import time

from pydantic import Field

from collector.component import ComponentConfig, CreateSettings, Factory
from collector.host import Host
from collector.model import (
    Function,
    Line,
    Location,
    Mapping,
    ProcessInfo,
    Sample,
    Stack,
    SymbolizedBatch,
    cpu_profile_type,
)


class FloodConfig(ComponentConfig):
    interval: float = Field(default=0.01, gt=0)
    batch_samples: int = Field(default=2000, ge=1)
    depth: int = Field(default=8, ge=1)
    honour_pressure: bool = True


class FloodReceiver:
    def __init__(self, settings: CreateSettings, config: FloodConfig) -> None:
        self.settings = settings
        self.config = config
        self._task: asyncio.Task[None] | None = None
        self._host: Host | None = None
        self._mapping = Mapping(0x1000, 0x9000_0000, 0, "/usr/bin/flood")
        self._process = ProcessInfo(4343, "flood", "/usr/bin/flood")
        self._ids = itertools.count()

    async def start(self, host: Host) -> None:
        self._host = host
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _batch(self, n: int) -> SymbolizedBatch:
        now = time.time_ns()
        samples = []
        for _ in range(n):
            i = next(self._ids)
            frames = tuple(
                Location(self._mapping, 0x1000 + 16 * i + d, (Line(Function(f"f{i}_{d}"), d),))
                for d in range(self.config.depth)
            )
            samples.append(Sample(Stack(frames), self._process, 4343, 0, "flood", now, 1))
        return SymbolizedBatch(cpu_profile_type(99), samples, self.settings.id)

    async def _run(self) -> None:
        assert self._host is not None
        counters = self._host.counters
        while True:
            await asyncio.sleep(self.config.interval)
            n = self.config.batch_samples
            if self.config.honour_pressure:
                n = int(n * self._host.pressure.sampling_factor)
                if n < self.config.batch_samples:
                    counters.add(self.settings.id, "throttled_batches")
            if n:
                counters.add(self.settings.id, "emitted_samples", n)
                self.settings.consumer.consume(self._batch(n))

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


factory = Factory(
    type="flood",
    kind="receiver",
    config_model=FloodConfig,
    create=FloodReceiver,
    output="symbolized",
    description="floods the pipeline with distinct samples (memory_limiter test)",
)
