"""Per-process mapping snapshots, taken while processes live (interim interface; the
symbolize work fills it in)."""

from __future__ import annotations

from collector.telemetry import Counters


class ProcessTable:
    """Thread-safe store of /proc/<pid>/maps snapshots keyed by pid and process lifetime."""

    def __init__(self, counters: Counters) -> None:
        self.counters = counters

    def observe(self, pid: int) -> None:
        """Snapshot ``pid`` now unless a current snapshot exists. Cheap when known."""

    def exec(self, pid: int) -> None:
        """``pid`` called exec: its next observe takes a fresh snapshot."""

    def exit(self, pid: int) -> None:
        """``pid`` exited: keep its snapshot for a grace period for late samples."""
