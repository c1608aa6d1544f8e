"""Settings of the offcpu receiver (shared ones in collector.bpf.stack_config)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from collector.bpf.stack_config import StackReceiverConfig
from collector.config.duration import Duration

State = Literal["interruptible", "uninterruptible"]


class OffCpuConfig(StackReceiverConfig):
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
    max_rate: int = Field(
        2000,
        ge=0,
        le=10_000_000,
        description="switch-outs recorded per second per CPU before adaptive sampling; 0 = all",
    )
    hook: Literal["raw_tracepoint", "tracepoint"] = Field(
        "raw_tracepoint", description="raw_tracepoint (Linux >= 5.18, cheaper) or tracepoint"
    )

    @model_validator(mode="after")
    def _block_range(self) -> OffCpuConfig:
        if self.max_block is not None and self.max_block < self.min_block:
            raise ValueError(
                f"max_block ({self.max_block}s) is below min_block ({self.min_block}s)"
            )
        return self
