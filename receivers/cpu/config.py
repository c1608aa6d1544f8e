"""Settings of the cpu receiver (shared ones in collector.bpf.stack_config)."""

from __future__ import annotations

import os
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from collector.bpf.stack_config import StackReceiverConfig

# Stack copies (unwind_stack_copy) of samples that are not a process's first: about this
# many a second from all CPUs together (a per-CPU gap between copies in BPF).
COPIES_PER_S = 500


def _stack_copy(value: int) -> int:
    if value and (value < 4096 or value > 65536 or value & (value - 1)):
        raise ValueError("unwind_stack_copy must be 0 or a power of two from 4096 to 65536")
    return value


class CpuConfig(StackReceiverConfig):
    frames_in_event: ClassVar[bool] = True  # bpf/cpu.bpf.c sends both stacks in the record
    frequency: int = Field(99, ge=1, le=10000, description="samples per second per CPU")
    event: Literal["cpu-clock", "cycles"] = "cpu-clock"
    include_idle: bool = False
    # Copies take at most a quarter of the ring and stop while user space holds 3 MB of them
    # (bpf/unwind.h unwind_copy_flow): unbounded, they once filled the 1 MB ring at a start of
    # 100 processes (72 % of samples lost; receivers/cpu/README).
    unwind_stack_copy: Annotated[int, AfterValidator(_stack_copy)] = Field(
        8192,
        description="bytes of user stack sent with a sample taken before its process's "
        "tables were loaded, unwound in user space once they are (0 = off; a power of two "
        "from 4096 to 65536)",
    )

    def stack_copy_defines(self, ncpus: int | None = None) -> dict[str, int]:
        """The -D defines of the stack copy (bpf/unwind.h), with tables only."""
        if not self.tables() or not self.unwind_stack_copy:
            return {"UNWIND_STACK_COPY": 0}
        ncpus = max(1, ncpus or os.cpu_count() or 1)
        return {
            "UNWIND_STACK_COPY": self.unwind_stack_copy,
            "UNWIND_COPY_GAP_NS": ncpus * 1_000_000_000 // COPIES_PER_S,
        }
