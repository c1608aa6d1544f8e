"""A third-party receiver that emits a fixed, known set of symbolized samples on an interval,
and a third-party exporter that takes symbolized batches as they are (``input="symbolized"``)
and writes the samples it saw per leaf function as JSON at shutdown."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from pydantic import Field, SecretStr

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


class SyntheticConfig(ComponentConfig):
    interval: float = Field(default=0.2, gt=0)
    # Samples per batch for each of the two stacks: "main;work" and "main;idle".
    work: int = 3
    idle: int = 1
    # Only here so the tests can check that secrets never reach print-config or logs.
    api_token: SecretStr | None = None


class SyntheticReceiver:
    def __init__(self, settings: CreateSettings, config: SyntheticConfig) -> None:
        self.settings = settings
        self.config = config
        self._task: asyncio.Task[None] | None = None
        m = Mapping(0x1000, 0x2000, 0, "/usr/bin/synthetic")
        main = Location(m, 0x1010, (Line(Function("main"), 10),))
        self.stacks = {
            "work": Stack((Location(m, 0x1100, (Line(Function("work"), 20),)), main)),
            "idle": Stack((Location(m, 0x1200, (Line(Function("idle"), 30),)), main)),
        }
        self.process = ProcessInfo(4242, "synthetic", "/usr/bin/synthetic")
        self.sent = 0

    async def start(self, host: Host) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _batch(self) -> SymbolizedBatch:
        now = time.time_ns()
        samples = []
        for name, n in (("work", self.config.work), ("idle", self.config.idle)):
            for _ in range(n):
                samples.append(
                    Sample(self.stacks[name], self.process, 4242, 0, "synthetic", now, 1)
                )
        self.sent += len(samples)
        return SymbolizedBatch(cpu_profile_type(99), samples, self.settings.id)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.interval)
            self.settings.consumer.consume(self._batch())

    async def shutdown(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
            self.settings.consumer.consume(self._batch())


factory = Factory(
    type="synthetic",
    kind="receiver",
    config_model=SyntheticConfig,
    create=SyntheticReceiver,
    output="symbolized",
    description="fixed synthetic CPU samples (plugin test)",
)


class TallyConfig(ComponentConfig):
    path: Path


class TallyExporter:
    def __init__(self, settings: CreateSettings, config: TallyConfig) -> None:
        self.config = config
        self.counts: dict[str, int] = {}
        self.batches = 0

    async def start(self, host: Host) -> None:
        pass

    async def export(self, batch: SymbolizedBatch) -> None:
        self.batches += 1
        for s in batch.samples:
            leaf = s.stack.frames[0].label() if s.stack.frames else "[empty]"
            self.counts[leaf] = self.counts.get(leaf, 0) + s.value

    async def shutdown(self) -> None:
        self.config.path.write_text(json.dumps({"batches": self.batches, "counts": self.counts}))


tally = Factory(
    type="tally",
    kind="exporter",
    config_model=TallyConfig,
    create=TallyExporter,
    input="symbolized",
    description="counts samples per leaf function (plugin test)",
)
