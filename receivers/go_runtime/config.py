"""Settings of the go_runtime receiver (defaults live here only)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from collector.bpf.targets import Pids, RingbufPages
from collector.component import ComponentConfig
from collector.config.duration import Duration

Signal = Literal["goroutines", "sched_latency", "gc", "alloc", "chan_block"]
ALL_SIGNALS: tuple[Signal, ...] = ("goroutines", "sched_latency", "gc", "alloc", "chan_block")


class GoRuntimeConfig(ComponentConfig):
    pids: Pids = Field(default_factory=list, description="Go processes to probe")
    binary: str | None = Field(
        None, description="probe every process running this binary, also ones started later"
    )
    signals: list[Signal] = Field(
        default_factory=lambda: list(ALL_SIGNALS), min_length=1, description="what to record"
    )
    alloc_sampling: Literal["auto", "mallocgc"] = Field(
        "auto",
        description="auto: per process, the allocations the Go runtime's heap profiler samples "
        "(a probe hit per MemProfileRate bytes) when the program profiles memory, else every "
        "allocation; mallocgc: always every allocation",
    )
    alloc_sample_bytes: int = Field(
        512 * 1024,
        ge=1,
        le=1 << 30,
        description="where every allocation is probed: one of s bytes is recorded with "
        "probability min(1, s / this); values are scaled back",
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
    ringbuf_pages: RingbufPages = Field(256, description="power of two; 4 KiB pages")
    drain_interval: Duration = Field(1.0, gt=0, le=60, description="seconds between batches")
    optional: bool = Field(
        False, description="if its reader fails, stop only this receiver (the collector goes on)"
    )

    @model_validator(mode="after")
    def _target(self) -> GoRuntimeConfig:
        if not self.pids and not self.binary:
            raise ValueError("set pids or binary: which Go processes to probe")
        return self
