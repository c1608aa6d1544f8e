"""Settings every stack-sampling BPF receiver shares (defaults live here only)."""

from __future__ import annotations

import mmap
import os
import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from collector.bpf.events import EVENT
from collector.bpf.ringbuf import HEADER_SIZE
from collector.bpf.targets import Pids, RingbufPages
from collector.component import ComponentConfig
from collector.config.duration import Duration
from collector.proc.pidns import own_pid
from collector.unwind.cache import TableCache

PAGE_SIZE = mmap.PAGESIZE  # BPF_RINGBUF_OUTPUT counts pages of the kernel's size
# With tables a record carries its user frames: sized for this many (deep Python stacks) when
# deciding how often BPF wakes the reader, so deep stacks cannot fill the buffer unseen.
TYPICAL_FRAMES = 32


class UnwindTableSettings(ComponentConfig):
    """How unwind tables are built and kept: shared by every receiver that unwinds from them."""

    unwind_budget: float = Field(
        0.1,
        gt=0,
        le=4,
        description="share of one core that building unwind tables may use on average "
        "(bursts of 0.5 s of CPU); further builds wait, the most-sampled process first",
    )
    unwind_cache: str | None = Field(
        "/var/cache/collector/unwind",
        description="directory of built unwind tables by build id, so a restart does not "
        "build them again; null = no cache",
    )
    unwind_cache_size: int = Field(
        256, ge=1, le=65536, description="MB the unwind table cache may hold (LRU)"
    )

    def table_cache(self) -> TableCache | None:
        """The on-disk table cache these settings name (None: off)."""
        if not self.unwind_cache:
            return None
        return TableCache(self.unwind_cache, self.unwind_cache_size << 20)


class StackReceiverConfig(UnwindTableSettings):
    # The program sends its stacks in the record (bpf/cpu.bpf.c), not only with tables.
    frames_in_event: ClassVar[bool] = False
    pids: Pids = Field(default_factory=list, description="only these tgids; [] = all")
    comm: str | None = Field(None, description="regex searched in the 15-char comm (user space)")
    profile_self: bool = Field(
        False,
        description="also sample the collector's own process; off by default, since naming "
        "its frames costs it what it measures (its libraries' DWARF: tens of MB and CPU "
        "that grow with every sample of itself); counted as self_skipped",
    )
    user_stacks: bool = True
    # auto by default: table builds are lazy (a process at its first sample), held to
    # unwind_budget of a core and cached on disk by build id (collector/unwind/README.md).
    unwind: Literal["auto", "frame_pointers", "tables"] = Field(
        "auto",
        description="user stacks: tables (.eh_frame, unwound in BPF) where a binary has one, "
        "frame pointers elsewhere; auto = tables, or frame pointers if the kernel refuses "
        "the walker; frame_pointers = the kernel's walker only",
    )
    kernel_stacks: bool = True
    stack_map_size: int = Field(16384, ge=64, le=1 << 20)
    ringbuf_pages: RingbufPages = Field(256, description="power of two; 4 KiB pages")
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

    def self_tgid(self) -> int:
        """The tgid BPF skips: the collector's own, as its /proc numbers it (BPF reports pids
        that way, bpf/pidns.h), unless profile_self is on or ``pids`` names it."""
        if self.profile_self:
            return 0
        own = own_pid()
        return 0 if own in self.pids else own

    def spill_map_size(self) -> int:
        """Entries of the map that takes stacks whose bucket in the main one is taken."""
        return max(64, self.stack_map_size // 4)

    def ringbuf_events(self) -> int:
        """How many events the ring buffer holds (each record: the event and its header)."""
        frames = self.frames_in_event or self.tables()
        record = EVENT.size + HEADER_SIZE + (8 * TYPICAL_FRAMES if frames else 0)
        return self.ringbuf_pages * PAGE_SIZE // record

    def tables(self) -> bool:
        """User stacks are unwound from tables (unless auto falls back at load)."""
        return self.user_stacks and self.unwind != "frame_pointers"

    def common_defines(self, ncpus: int | None = None) -> dict[str, int]:
        """The -D defines bpf/common.h and the stack walks read."""
        ncpus = max(1, ncpus or os.cpu_count() or 1)
        return {
            "RINGBUF_PAGES": self.ringbuf_pages,
            "STACK_MAP_SIZE": self.stack_map_size,
            "SPILL_MAP_SIZE": self.spill_map_size(),
            "FILTER_PIDS": int(bool(self.pids)),
            "SELF_TGID": self.self_tgid(),
            "USER_STACKS": int(self.user_stacks),
            "KERNEL_STACKS": int(self.kernel_stacks),
            "UNWIND_TABLES": int(self.tables()),
            # wake the reader when every CPU together may have filled a quarter of the buffer
            "WAKE_EVERY": max(1, self.ringbuf_events() // (4 * ncpus)),
        }
