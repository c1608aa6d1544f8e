"""Settings every stack-sampling BPF receiver shares (defaults live here only)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from collector.component import ComponentConfig
from collector.config.duration import Duration


class StackReceiverConfig(ComponentConfig):
    pids: list[int] = Field(default_factory=list, description="only these tgids; [] = all")
    comm: str | None = Field(None, description="regex searched in the 15-char comm (user space)")
    user_stacks: bool = True
    kernel_stacks: bool = True
    stack_map_size: int = Field(16384, ge=64, le=1 << 20)
    ringbuf_pages: int = Field(256, ge=1, le=1 << 16, description="power of two; 4 KiB pages")
    drain_interval: Duration = Field(1.0, gt=0, le=60, description="seconds between batches")
    optional: bool = Field(
        False,
        description="if its reader fails, stop only this receiver (the collector goes on); "
        "by default the collector stops with exit code 4",
    )

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

    def common_defines(self) -> dict[str, int]:
        """The -D defines bpf/common.h and the stack walks read."""
        return {
            "RINGBUF_PAGES": self.ringbuf_pages,
            "STACK_MAP_SIZE": self.stack_map_size,
            "FILTER_PIDS": int(bool(self.pids)),
            "USER_STACKS": int(self.user_stacks),
            "KERNEL_STACKS": int(self.kernel_stacks),
        }
