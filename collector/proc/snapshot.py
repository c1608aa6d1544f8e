"""One process's snapshot: identity, executable mappings and the pinned files behind them."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import NamedTuple

from collector.proc.pinned import PinnedFile


class MappedRange(NamedTuple):
    """An executable mapping. ``file`` is None for anonymous/special ones ([vdso], JIT). A
    tuple, as MapLine is: one per mapping of every new process."""

    start: int
    end: int
    offset: int
    path: str
    file: PinnedFile | None


@dataclass(slots=True, eq=False)
class Snapshot:
    """A process as seen while it lived.

    ``key`` = (pid, start_time, since_ns) is stable across refreshes of the same image and
    differs for a reused pid or after exec, so callers key their caches by it.
    ``since_ns`` is the wall-clock ns from which samples belong to this snapshot (process start,
    or the exec call). Immutable after creation apart from ``ended_ns``, ``exec_ns`` and
    bookkeeping.
    """

    pid: int
    start_time: int  # clock ticks since boot (field 22 of /proc/<pid>/stat)
    since_ns: int
    comm: str
    exe_path: str
    container_id: str
    mappings: tuple[MappedRange, ...]
    exe_file: PinnedFile | None
    taken_mono: float
    refreshed: bool = False
    taken_ns: int = 0  # wall-clock ns when the maps were read (0: unknown)
    ended_ns: int = 0  # wall-clock ns when exit/exec was reported; 0 while current
    # Wall-clock ns of the exec that replaced this image (0: none): later samples are not its,
    # even when the new image could not be snapshotted (gone before the exec was read).
    exec_ns: int = 0
    # The pid in each PID namespace from /proc's down to the process's own (NSpid of
    # /proc/<pid>/status): (pid,) outside containers, (host pid, ..., pid inside) in one.
    nspid: tuple[int, ...] = ()
    _starts: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._starts = [m.start for m in self.mappings]

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.pid, self.start_time, self.since_ns)

    @property
    def pid_namespaced(self) -> int:
        """The pid the process has in its own PID namespace when that is not /proc's; else 0."""
        return self.nspid[-1] if len(self.nspid) > 1 else 0

    def find(self, addr: int) -> MappedRange | None:
        i = bisect_right(self._starts, addr) - 1
        if i >= 0:
            m = self.mappings[i]
            if addr < m.end:
                return m
        return None

    def files(self) -> set[PinnedFile]:
        out = {m.file for m in self.mappings if m.file is not None}
        if self.exe_file is not None:
            out.add(self.exe_file)
        return out
