"""The ``go_runtime`` receiver: Go runtime events from uprobes on unmodified Go binaries."""

from __future__ import annotations

from collector.component import CreateSettings, Factory
from receivers.go_runtime.config import GoRuntimeConfig
from receivers.go_runtime.receiver import GoRuntimeReceiver


def _create(settings: CreateSettings, config: GoRuntimeConfig) -> GoRuntimeReceiver:
    return GoRuntimeReceiver(settings, config)


factory = Factory(
    type="go_runtime",
    kind="receiver",
    config_model=GoRuntimeConfig,
    create=_create,
    output="raw",
    needs_bpf=True,
    needs_tracefs=True,
    description="Go goroutines, scheduling latency, GC pauses, allocations and channel "
    "blocking, from uprobes",
)
