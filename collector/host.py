"""Services the runtime shares with every component (like the OTel Collector's Host)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from collector.telemetry import Counters

if TYPE_CHECKING:
    from collector.proc import ProcessTable


class Host:
    """Shared by receivers and processors so they never import each other.

    ``processes`` is the per-process mapping snapshot store: receivers ask it to snapshot a
    process as soon as they see it (while it lives), the symbolizer reads the snapshots.
    """

    def __init__(self, counters: Counters | None = None) -> None:
        self.counters = counters or Counters()
        self._processes: ProcessTable | None = None

    @property
    def processes(self) -> ProcessTable:
        if self._processes is None:
            from collector.proc import ProcessTable

            self._processes = ProcessTable(self.counters)
        return self._processes
