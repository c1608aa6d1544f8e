"""The runtime's contract: start and shutdown order, drop-and-count queues, draining."""

from __future__ import annotations

import asyncio
from typing import Any

from collector.component import ComponentConfig, CreateSettings, Factory
from collector.config.load import ComponentSpec, LoadedConfig
from collector.config.schema import PipelineConfig, RootConfig, ServiceConfig
from collector.host import Host
from collector.model import RawBatch, cpu_profile_type
from collector.pipeline import Service


class _Cfg(ComponentConfig):
    pass


class Recorder:
    """A component that records lifecycle calls into a shared journal."""

    def __init__(self, name: str, journal: list[str], delay: float = 0.0) -> None:
        self.name, self.journal, self.delay = name, journal, delay
        self.settings: CreateSettings | None = None
        self.batches: list[Any] = []

    async def start(self, host: Host) -> None:
        self.journal.append(f"start {self.name}")

    async def shutdown(self) -> None:
        self.journal.append(f"shutdown {self.name}")

    async def process(self, batch: Any) -> Any:
        return batch

    async def export(self, batch: Any) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.batches.append(batch)


def _batch(n: int = 1) -> RawBatch:
    from collector.model import RawSample

    return RawBatch(cpu_profile_type(99), [RawSample(1, 1, 0, "x", 1, 1) for _ in range(n)])


def _service(journal: list[str], exporter_delay: float = 0.0, queue_size: int = 64):
    made: dict[str, Recorder] = {}

    def factory(kind: str, name: str, delay: float = 0.0) -> Factory:
        def create(settings: CreateSettings, config: Any) -> Recorder:
            rec = made[name] = Recorder(name, journal, delay)
            rec.settings = settings
            return rec

        return Factory(
            name,
            kind,
            _Cfg,
            create,  # type: ignore[arg-type]
            input=None if kind == "receiver" else "raw",
            output=None if kind == "exporter" else "raw",
        )

    specs = {
        ("receiver", "r"): ComponentSpec("r", "receiver", factory("receiver", "r"), _Cfg(), "t"),
        ("processor", "p"): ComponentSpec("p", "processor", factory("processor", "p"), _Cfg(), "t"),
        ("exporter", "e"): ComponentSpec(
            "e", "exporter", factory("exporter", "e", exporter_delay), _Cfg(), "t"
        ),
    }
    root = RootConfig(
        service=ServiceConfig(
            pipelines={
                "profiles": PipelineConfig(receivers=["r"], processors=["p"], exporters=["e"])
            },
            queue_size=queue_size,
            shutdown_timeout=5,
        )
    )
    return Service(LoadedConfig(root, ["t"], specs)), made


def test_exporters_start_first_receivers_last_and_shutdown_reverses() -> None:
    journal: list[str] = []

    async def main() -> None:
        svc, _ = _service(journal)
        await svc.start()
        await svc.shutdown()
        await svc.shutdown()  # idempotent

    asyncio.run(main())
    assert journal == [
        "start e",
        "start p",
        "start r",
        "shutdown r",
        "shutdown p",
        "shutdown e",
    ]


def test_full_queue_drops_newest_and_counts_exactly_and_shutdown_drains() -> None:
    journal: list[str] = []

    async def main() -> tuple[Service, dict[str, Recorder]]:
        svc, made = _service(journal, exporter_delay=0.05, queue_size=2)
        await svc.start()
        consumer = made["r"].settings.consumer  # type: ignore[union-attr]
        accepted = sum(consumer.consume(_batch(10)) for _ in range(20))  # never blocks
        assert 0 < accepted < 20
        await svc.shutdown()
        return svc, made

    svc, made = asyncio.run(main())
    counters = svc.host.counters
    dropped = counters.get("pipelines/profiles", "samples_dropped") + counters.get(
        "exporters/e", "samples_dropped"
    )
    exported = sum(len(b.samples) for b in made["e"].batches)
    # Every sample offered is either exported or counted as dropped: nothing vanishes.
    assert exported + dropped == 20 * 10
    assert dropped > 0 and exported > 0
    assert counters.get("pipelines/profiles", "samples_dropped_at_shutdown") == 0
