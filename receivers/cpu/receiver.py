"""The cpu receiver: samples on-CPU stacks with a perf event BPF program (bpf/cpu.bpf.c)."""

from __future__ import annotations

from collector.bpf.attach import AttachSpec
from collector.bpf.stack_receiver import StackReceiver
from collector.component import CreateSettings
from collector.model import cpu_profile_type
from receivers.cpu.config import CpuConfig


class CpuReceiver(StackReceiver):
    program = "cpu"
    program_counters = ("perf_samples",)  # every perf sample, idle and filtered ones included

    def __init__(self, settings: CreateSettings, config: CpuConfig) -> None:
        super().__init__(settings, config, cpu_profile_type(config.frequency))
        self._cpu_config = config

    def defines(self) -> dict[str, int]:
        return {**super().defines(), "INCLUDE_IDLE": int(self._cpu_config.include_idle)}

    def attachments(self) -> list[AttachSpec]:
        c = self._cpu_config
        return [
            AttachSpec("perf_event", "on_sample", c.event, sample_freq=c.frequency),
            AttachSpec("tracepoint", "on_exec", "sched:sched_process_exec"),
            AttachSpec("tracepoint", "on_exit", "sched:sched_process_exit"),
        ]

    def describe(self) -> str:
        return f"frequency={self._cpu_config.frequency} event={self._cpu_config.event}"
