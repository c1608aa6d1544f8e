"""What a program asks the loader child to attach (shared by the parent and the child)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

AttachKind = Literal["perf_event", "tracepoint", "raw_tracepoint", "uprobe", "uretprobe", "program"]

# Perf events a perf_event attachment may name: (perf type, config).
PERF_EVENTS: dict[str, tuple[int, int]] = {
    "cpu-clock": (1, 0),  # PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_CLOCK: always present
    "cycles": (0, 0),  # PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES: often absent in VMs
}


@dataclass(frozen=True, slots=True)
class AttachSpec:
    """Attach BPF function ``fn_name`` to ``target``.

    - perf_event: target is a PERF_EVENTS name; one event per online CPU at ``sample_freq`` Hz.
    - tracepoint: target is ``category:event`` (needs tracefs).
    - raw_tracepoint: target is the event name (``sched_switch``).
    - uprobe / uretprobe: target is a binary path, ``symbol`` the function, ``pid`` -1 for all.
    - program: load ``fn_name`` as a kprobe-type program and hand back its fd unattached (the
      parent attaches it to uprobes per process, collector/bpf/uprobe.py); target is unused.
    """

    kind: AttachKind
    fn_name: str
    target: str
    sample_freq: int = 0
    symbol: str = ""
    pid: int = -1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AttachSpec:
        return cls(**data)
