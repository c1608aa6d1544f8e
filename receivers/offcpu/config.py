"""Settings of the offcpu receiver (defaults live here only)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from collector.component import ComponentConfig
from collector.config.duration import Duration

State = Literal["interruptible", "uninterruptible"]


class OffCpuConfig(ComponentConfig):
    pids: list[int] = Field(default_factory=list, description="only these tgids; [] = all")
    comm: str | None = Field(None, description="regex searched in the 15-char comm (user space)")
    states: list[State] = Field(
        default_factory=lambda: ["interruptible", "uninterruptible"],
        min_length=1,
        description="which sleeps count: interruptible (S) and/or uninterruptible (D)",
    )
    min_block: Duration = Field(10e-6, description="shorter waits are not reported (seconds)")
    max_block: Duration | None = Field(None, description="longer waits are counted, not reported")
    sample_ratio: float = Field(
        1.0, gt=0, le=1, description="fraction of switch-outs recorded; values scaled by 1/ratio"
    )
    hook: Literal["raw_tracepoint", "tracepoint"] = Field(
        "raw_tracepoint", description="raw_tracepoint (Linux >= 5.18, cheaper) or tracepoint"
    )
    user_stacks: bool = True
    kernel_stacks: bool = True
    stack_map_size: int = Field(16384, ge=64, le=1 << 20)
    ringbuf_pages: int = Field(256, ge=1, le=1 << 16, description="power of two; 4 KiB pages")
    drain_interval: Duration = Field(1.0, gt=0, le=60, description="seconds between batches")

    @field_validator("comm")
    @classmethod
    def _comm_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"comm is not a valid regular expression: {exc}") from exc
        return value

    @field_validator("ringbuf_pages")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError(f"ringbuf_pages must be a power of two, got {value}")
        return value

    @field_validator("pids")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(p <= 0 for p in value):
            raise ValueError("pids must be positive process ids")
        return value

    @model_validator(mode="after")
    def _block_range(self) -> OffCpuConfig:
        if self.max_block is not None and self.max_block < self.min_block:
            raise ValueError(
                f"max_block ({self.max_block}s) is below min_block ({self.min_block}s)"
            )
        return self
