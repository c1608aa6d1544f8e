"""Settings of the cpu receiver (defaults live here only)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from collector.component import ComponentConfig

# Shared duration parsing (10, "10s", "500ms"); it should move to collector.config.
from collector.config.duration import Duration


class CpuConfig(ComponentConfig):
    frequency: int = Field(99, ge=1, le=10000, description="samples per second per CPU")
    event: Literal["cpu-clock", "cycles"] = "cpu-clock"
    pids: list[int] = Field(default_factory=list, description="only these tgids; [] = all")
    comm: str | None = Field(None, description="regex searched in the 15-char comm (user space)")
    include_idle: bool = False
    kernel_stacks: bool = True
    user_stacks: bool = True
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
