"""Settings of the heap receiver (defaults live here only)."""

from __future__ import annotations

import mmap
from typing import Literal

from pydantic import Field, model_validator

from collector.bpf.stack_config import UnwindTableSettings
from collector.bpf.targets import Pids, RingbufPages
from collector.config.duration import Duration


class HeapConfig(UnwindTableSettings):
    mode: Literal["sampled", "page_faults"] = Field(
        "sampled",
        description="sampled: allocator uprobes sampled by bytes; page_faults: no allocator "
        "probes, user page faults and brk/mmap growth of the targets",
    )
    pids: Pids = Field(default_factory=list, description="target processes (tgids)")
    binary: str | None = Field(
        None, description="target every process running this executable, also ones started later"
    )
    allocator: str = Field(
        "libc.so.6",
        description="the allocator library, found by file name in each target's maps; a path "
        "names it exactly; 'exe' is the target's own executable (a static allocator)",
    )
    sample_bytes: int = Field(
        524288, ge=1, le=1 << 40, description="mean bytes allocated between two samples"
    )
    min_age: Duration | None = Field(
        30.0, ge=0, description="outstanding for longer: also reported as leak_*; null = off"
    )
    interval: Duration = Field(
        10.0, gt=0, le=3600, description="seconds per profile (window); match the exporters'"
    )
    drain_interval: Duration = Field(1.0, gt=0, le=60, description="seconds between ring reads")
    outstanding_map_size: int = Field(65536, ge=64, le=1 << 22)
    stack_map_size: int = Field(16384, ge=64, le=1 << 20)
    ringbuf_pages: RingbufPages = Field(64, description="power of two; 4 KiB pages")
    user_stacks: bool = True
    unwind: Literal["auto", "tables", "frame_pointers"] = Field(
        "auto",
        description="page_faults mode: fault stacks from .eh_frame tables (faults inside "
        "libraries without frame pointers, such as glibc's malloc); auto falls back to frame "
        "pointers if the kernel refuses the walker; sampled mode always uses frame pointers",
    )
    optional: bool = Field(
        False, description="if its reader fails, stop only this receiver (else exit code 4)"
    )

    @model_validator(mode="after")
    def _one_target(self) -> HeapConfig:
        if bool(self.pids) == bool(self.binary):
            raise ValueError("set exactly one of pids (a list) or binary (a path)")
        if self.binary is not None and not self.binary.startswith("/"):
            raise ValueError(f"binary must be an absolute path, got {self.binary!r}")
        return self

    def ringbuf_records(self) -> int:
        return self.ringbuf_pages * mmap.PAGESIZE // 80  # 72-byte record + 8-byte header
