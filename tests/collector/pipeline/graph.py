"""Building a Service from in-test components: a journal of what each one saw, and when."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

from collector.component import ComponentConfig, CreateSettings, DataKind, Factory
from collector.config.load import ComponentSpec, LoadedConfig
from collector.config.schema import PipelineConfig, RootConfig, ServiceConfig
from collector.host import Host
from collector.model import ProfileSet, WindowSettings
from collector.pipeline import Service


class Cfg(ComponentConfig):
    pass


class Recorder:
    """A receiver, processor or exporter that records its lifecycle and what it was given."""

    def __init__(self, name: str, journal: list[str], block: asyncio.Event | None = None) -> None:
        self.name, self.journal, self.block = name, journal, block
        self.settings: CreateSettings | None = None
        self.items: list[Any] = []

    async def start(self, host: Host) -> None:
        self.journal.append(f"start {self.name}")

    async def shutdown(self) -> None:
        self.journal.append(f"shutdown {self.name}")

    async def process(self, batch: Any) -> Any:
        return batch

    async def export(self, item: Any) -> None:
        if self.block is not None:
            await self.block.wait()
        self.items.append(item)
        what = "set" if isinstance(item, ProfileSet) else "batch"
        self.journal.append(f"export {self.name} {what}")

    @property
    def sets(self) -> list[ProfileSet]:
        return [i for i in self.items if isinstance(i, ProfileSet)]

    def consume(self, batch: Any) -> bool:
        assert self.settings is not None and self.settings.consumer is not None
        return self.settings.consumer.consume(batch)


@dataclass
class Graph:
    """``add`` components, ``pipeline`` them, then ``build`` the Service."""

    journal: list[str] = field(default_factory=list)
    made: dict[str, Recorder] = field(default_factory=dict)
    specs: dict[tuple[Any, str], ComponentSpec] = field(default_factory=dict)
    pipelines: dict[str, PipelineConfig] = field(default_factory=dict)
    blocks: dict[str, asyncio.Event] = field(default_factory=dict)

    def add(
        self,
        kind: str,
        name: str,
        input: DataKind | None = None,
        output: DataKind | None = None,
        window: WindowSettings | None = None,
    ) -> None:
        def create(settings: CreateSettings, config: Any) -> Recorder:
            rec = self.made[name] = Recorder(name, self.journal, self.blocks.get(name))
            rec.settings = settings
            return rec

        factory = Factory(
            name.split("/")[0],
            kind,  # type: ignore[arg-type]
            Cfg,
            create,  # type: ignore[arg-type]
            input=input,
            output=output,
            window=(lambda _cfg: window) if window is not None else None,
        )
        self.specs[(kind, name)] = ComponentSpec(name, kind, factory, Cfg(), "t")  # type: ignore[arg-type]

    def add_real(self, kind: str, name: str, factory: Factory, config: Any) -> list[Any]:
        """A real component; the returned list receives the object once it is created."""
        created: list[Any] = []

        def create(settings: CreateSettings, cfg: Any) -> Any:
            created.append(factory.create(settings, cfg))
            return created[-1]

        real = replace(factory, create=create)
        self.specs[(kind, name)] = ComponentSpec(name, kind, real, config, "t")  # type: ignore[arg-type]
        return created

    def pipeline(self, name: str, receivers: list[str], exporters: list[str], processors=()):  # type: ignore[no-untyped-def]
        self.pipelines[name] = PipelineConfig(
            receivers=receivers, processors=list(processors), exporters=exporters
        )

    def build(self, queue_size: int = 64, shutdown_timeout: float = 5) -> Service:
        root = RootConfig(
            service=ServiceConfig(
                pipelines=self.pipelines, queue_size=queue_size, shutdown_timeout=shutdown_timeout
            )
        )
        return Service(LoadedConfig(root, ["t"], self.specs))
