"""Per-process mapping snapshots, taken while processes live, with mapped binaries pinned."""

from collector.proc.pinned import PinnedFile
from collector.proc.snapshot import MappedRange, Snapshot
from collector.proc.table import ProcessTable

__all__ = ["MappedRange", "PinnedFile", "ProcessTable", "Snapshot"]
