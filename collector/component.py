"""Component interfaces: what a receiver, processor or exporter plugin provides.

Lifecycle (as in the OpenTelemetry Collector): ``start`` returns quickly and spawns its own
work; ``shutdown`` is idempotent, safe without ``start``, and hands buffered data downstream.
Exporters start first and receivers last; shutdown runs in the opposite order.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from collector.host import Host
    from collector.model.windows import WindowSettings

Kind = Literal["receiver", "processor", "exporter"]
# What flows between stages: "raw" = RawBatch (addresses), "symbolized" = SymbolizedBatch,
# "profiles" = ProfileSet (one deduplicated window). Only exporters take "profiles": the
# pipeline builds each window's ProfileSet once and hands the same object to all of them.
# "any" (processors only, input and output both): passes on whatever it gets, unchanged in
# kind (memory_limiter), so it may stand before or after symbolize.
DataKind = Literal["raw", "symbolized", "profiles", "any"]


class ComponentConfig(BaseModel):
    """Base for every component's settings: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@runtime_checkable
class Component(Protocol):
    async def start(self, host: Host) -> None: ...

    async def shutdown(self) -> None: ...


class Consumer(Protocol):
    """Where a receiver hands its batches. Never blocks: returns False when the batch was
    dropped because the next stage's queue is full (the drop is counted by the pipeline).
    The runtime's consumer (collector.pipeline.queues.FanOut) also answers
    ``takes(signal)``: whether any pipeline of that signal ("traces") takes this receiver."""

    def consume(self, batch: Any) -> bool: ...


# Pipelines carry "profiles" or "traces" (collector.config.schema.pipeline_signal).
Signal = Literal["profiles", "traces"]
# A processor that holds batches hands them on later through this (CreateSettings.emit):
# the batch continues with the processors after it, then the exporters and windows.
Emit = Callable[[Any], Awaitable[None]]


@runtime_checkable
class Processor(Component, Protocol):
    async def process(self, batch: Any) -> Any | None:
        """Transform one batch; return None to drop it."""
        ...


@runtime_checkable
class Exporter(Component, Protocol):
    async def export(self, batch: Any) -> None:
        """Take one item of the factory's ``input`` kind. A ProfileSet is shared with the
        pipeline's other exporters: read it, never change it."""
        ...


@dataclass(frozen=True, slots=True)
class CreateSettings:
    """What a factory gets besides the config: identity, logger, and (receivers) a consumer."""

    id: str
    logger: logging.Logger
    consumer: Consumer | None = None  # set for receivers only
    emit: Emit | None = None  # set for processors in a pipeline (see Emit)


@dataclass(frozen=True)
class Factory:
    """Registered under an entry point; validated when it is loaded.

    ``create(settings, config)`` builds the component. ``input``/``output`` say what data the
    component takes and gives, so a pipeline with a missing symbolize step fails at start-up.
    ``needs_bpf`` makes the CLI check root, tracefs and kernel headers before starting.
    ``window(config)`` (exporters taking "profiles") says how the pipeline cuts windows for
    this exporter; exporters with equal settings share one window, so one deduplication.
    """

    type: str
    kind: Kind
    config_model: type[ComponentConfig]
    create: Callable[[CreateSettings, Any], Component]
    input: DataKind | None = None  # receivers take nothing
    output: DataKind | None = None  # exporters give nothing
    window: Callable[[Any], WindowSettings] | None = None  # default: WindowSettings()
    # Which pipelines may list it: a receiver giving spans (SpanBatch) or an exporter
    # taking them says "traces" too.
    signals: tuple[Signal, ...] = ("profiles",)
    needs_bpf: bool = False
    needs_tracefs: bool = False
    description: str = ""
    # Filled in by the registry: "built-in" or "<distribution> <version>".
    origin: str = field(default="", compare=False)
