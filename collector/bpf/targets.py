"""Which processes a per-process receiver targets: pids, or every process running a binary.

The receivers that attach uprobes per process (receivers/heap, receivers/go_runtime) name
their targets the same way: ``pids`` (tgids) and/or ``binary``, an executable known by its
device and inode, so a process is matched whatever path or link it was started through.
``Pids`` and ``RingbufPages`` carry the config checks every BPF receiver shares (also
collector/bpf/stack_config.py).
"""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import AfterValidator, Field


def _positive(value: list[int]) -> list[int]:
    if any(p <= 0 for p in value):
        raise ValueError("pids must be positive process ids")
    return value


def _power_of_two(value: int) -> int:
    if value & (value - 1):
        raise ValueError(f"ringbuf_pages must be a power of two, got {value}")
    return value


Pids = Annotated[list[int], AfterValidator(_positive)]
RingbufPages = Annotated[int, Field(ge=1, le=1 << 16), AfterValidator(_power_of_two)]


def exe_id(pid: int | str) -> tuple[int, int] | None:
    """(device, inode) of process ``pid``'s executable, or of the file at a path."""
    try:
        st = os.stat(pid if isinstance(pid, str) else f"/proc/{pid}/exe")
    except OSError:
        return None
    return st.st_dev, st.st_ino


class BinaryTarget:
    """The processes running the executable at ``path``. A file that does not exist yet is
    looked up again at each match (created after the start); until then a process matches
    by the path its executable link shows."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.key = exe_id(path)

    def runs(self, pid: int) -> bool:
        if self.key is None:
            self.key = exe_id(self.path)
        if self.key is not None:
            return exe_id(pid) == self.key
        try:
            return os.readlink(f"/proc/{pid}/exe") == self.path
        except OSError:
            return False

    def running(self) -> list[int]:
        """Pids running it now (none while the file does not exist)."""
        if self.key is None:
            self.key = exe_id(self.path)
        if self.key is None:
            return []
        return [int(e) for e in os.listdir("/proc") if e.isdigit() and exe_id(int(e)) == self.key]
