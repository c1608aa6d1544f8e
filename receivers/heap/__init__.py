"""The ``heap`` receiver: sampled allocations, in-use memory and leaks per stack, or page faults."""

from __future__ import annotations

from collector.component import CreateSettings, Factory
from receivers.heap.config import HeapConfig
from receivers.heap.receiver import HeapReceiver


def _create(settings: CreateSettings, config: HeapConfig) -> HeapReceiver:
    return HeapReceiver(settings, config)


factory = Factory(
    type="heap",
    kind="receiver",
    config_model=HeapConfig,
    create=_create,
    output="raw",
    needs_bpf=True,
    needs_tracefs=True,
    description="heap profiles: allocations, in-use memory and leaks from sampled malloc/free "
    "uprobes per target process, or user page faults",
)
