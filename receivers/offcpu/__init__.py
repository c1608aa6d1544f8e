"""The ``offcpu`` receiver: off-CPU (blocked) time per stack from sched_switch."""

from __future__ import annotations

from collector.component import CreateSettings, Factory
from receivers.offcpu.config import OffCpuConfig
from receivers.offcpu.receiver import OffCpuReceiver


def _create(settings: CreateSettings, config: OffCpuConfig) -> OffCpuReceiver:
    return OffCpuReceiver(settings, config)


factory = Factory(
    type="offcpu",
    kind="receiver",
    config_model=OffCpuConfig,
    create=_create,
    output="raw",
    needs_bpf=True,
    needs_tracefs=True,
    description="off-CPU time: how long threads wait in sleeps, and at which user+kernel stack",
)
