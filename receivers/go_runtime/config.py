"""Settings of the go_runtime receiver (defaults live here only)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from collector.component import ComponentConfig
from collector.config.duration import Duration

Signal = Literal["goroutines", "sched_latency", "gc", "alloc", "chan_block"]
ALL_SIGNALS: tuple[Signal, ...] = ("goroutines", "sched_latency", "gc", "alloc", "chan_block")


class GoRuntimeConfig(ComponentConfig):
    pids: list[int] = Field(default_factory=list, description="Go processes to probe")
    binary: str | None = Field(
        None, description="probe every process running this binary, also ones started later"
    )
    signals: list[Signal] = Field(
        default_factory=lambda: list(ALL_SIGNALS), min_length=1, description="what to record"
    )
    alloc_sample_bytes: int = Field(
        512 * 1024,
        ge=1,
        le=1 << 30,
        description="an allocation of s bytes is recorded with probability min(1, s / this); "
        "values are scaled back",
    )
    max_rate: int = Field(
        2000,
        ge=0,
        le=10_000_000,
        description="scheduling and channel records per second per CPU (each) before "
        "adaptive sampling (values scaled back); 0 = all",
    )
    live_interval: Duration = Field(
        10.0, gt=0, le=3600, description="seconds between goroutines_live snapshots"
    )
    max_live: int = Field(
        262_144, ge=1, le=1 << 24, description="live goroutines tracked; more are counted"
    )
    goroutine_slots: int = Field(
        16_384, ge=64, le=1 << 20, description="parked/runnable goroutines BPF remembers (LRU)"
    )
    ringbuf_pages: int = Field(256, ge=1, le=1 << 16, description="power of two; 4 KiB pages")
    drain_interval: Duration = Field(1.0, gt=0, le=60, description="seconds between batches")
    optional: bool = Field(
        False, description="if its reader fails, stop only this receiver (the collector goes on)"
    )

    @field_validator("pids")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(p <= 0 for p in value):
            raise ValueError("pids must be positive process ids")
        return value

    @field_validator("ringbuf_pages")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError(f"ringbuf_pages must be a power of two, got {value}")
        return value

    @model_validator(mode="after")
    def _target(self) -> GoRuntimeConfig:
        if not self.pids and not self.binary:
            raise ValueError("set pids or binary: which Go processes to probe")
        return self
