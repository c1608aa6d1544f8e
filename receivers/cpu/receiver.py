"""The cpu receiver: samples on-CPU stacks with a perf event BPF program (bpf/cpu.bpf.c)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from collector.bpf.attach import AttachSpec
from collector.bpf.stack_receiver import StackReceiver
from collector.component import CreateSettings
from collector.model import cpu_profile_type
from receivers.cpu.config import CpuConfig

if TYPE_CHECKING:
    from collector.host import Host


class CpuReceiver(StackReceiver):
    program = "cpu"
    program_counters = ("perf_samples",)  # every perf sample, idle and filtered ones included

    def __init__(self, settings: CreateSettings, config: CpuConfig) -> None:
        super().__init__(settings, config, cpu_profile_type(config.frequency))
        self._cpu_config = config

    def defines(self) -> dict[str, int]:
        # Stacks travel in the record (bpf/cpu.bpf.c): common.h's stack maps stay unused, so
        # they get the smallest size instead of stack_map_size (21 MB of kernel memory).
        return {
            **super().defines(),
            **self._cpu_config.stack_copy_defines(),
            "INCLUDE_IDLE": int(self._cpu_config.include_idle),
            "STACK_MAP_SIZE": 64,
            "SPILL_MAP_SIZE": 64,
        }

    async def start(self, host: Host) -> None:
        if "stack_map_size" in self._cpu_config.model_fields_set:
            self._log.warning(
                "cpu receiver id=%s: stack_map_size has no effect (stacks travel in the ring "
                "buffer record; it sizes the offcpu receiver's stack map)",
                self._id,
            )
        await super().start(host)

    def attachments(self) -> list[AttachSpec]:
        c = self._cpu_config
        return [
            AttachSpec("perf_event", "on_sample", c.event, sample_freq=c.frequency),
            AttachSpec("tracepoint", "on_exec", "sched:sched_process_exec"),
            AttachSpec("tracepoint", "on_exit", "sched:sched_process_exit"),
        ]

    def describe(self) -> str:
        return f"frequency={self._cpu_config.frequency} event={self._cpu_config.event}"
