"""The ``cpu`` receiver: on-CPU stack sampling with a perf event BPF program."""

from __future__ import annotations

from collector.component import CreateSettings, Factory
from receivers.cpu.config import CpuConfig
from receivers.cpu.receiver import CpuReceiver


def _create(settings: CreateSettings, config: CpuConfig) -> CpuReceiver:
    return CpuReceiver(settings, config)


factory = Factory(
    type="cpu",
    kind="receiver",
    config_model=CpuConfig,
    create=_create,
    output="raw",
    needs_bpf=True,
    needs_tracefs=True,
    description="samples on-CPU user and kernel stacks of every process at a fixed frequency",
)
