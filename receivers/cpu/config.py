"""Settings of the cpu receiver (shared ones in collector.bpf.stack_config)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from collector.bpf.stack_config import StackReceiverConfig


class CpuConfig(StackReceiverConfig):
    frames_in_event: ClassVar[bool] = True  # bpf/cpu.bpf.c sends both stacks in the record
    frequency: int = Field(99, ge=1, le=10000, description="samples per second per CPU")
    event: Literal["cpu-clock", "cycles"] = "cpu-clock"
    include_idle: bool = False
