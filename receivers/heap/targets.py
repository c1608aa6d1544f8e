"""Which processes are profiled, where their allocator is, and their uprobes.

A target's allocator is found in its own maps (by file name, e.g. ``libc.so.6``; a path names
it exactly; ``exe`` is the executable itself). Its entry points get this receiver's programs
through the uprobe PMU for that process only (collector/bpf/uprobe.py), so other processes
never trap. Symbol offsets are read once per allocator file (by device and inode).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable

from collector.bpf.uprobe import ElfError, UprobeError, open_uprobe, symbol_offsets

# symbol, entry program, return program ("" = none)
PROBES: tuple[tuple[str, str, str], ...] = (
    ("malloc", "on_malloc", "on_alloc_return"),
    ("calloc", "on_calloc", "on_alloc_return"),
    ("realloc", "on_realloc", "on_alloc_return"),
    ("free", "on_free", ""),
    ("posix_memalign", "on_posix_memalign", "on_posix_memalign_return"),
    ("aligned_alloc", "on_memalign", "on_alloc_return"),
    ("memalign", "on_memalign", "on_alloc_return"),
    ("valloc", "on_malloc", "on_alloc_return"),
    ("pvalloc", "on_malloc", "on_alloc_return"),
)
PROGRAMS = tuple(sorted({p for _, entry, ret in PROBES for p in (entry, ret) if p}))
# After this long a process that exec'd without its allocator mapped yet is given up.
RESOLVE_WINDOW_S = 2.0


class TargetProblem(Exception):
    """This process cannot be profiled (one line saying why); the others go on."""


def mapped_name(pid: int, allocator: str) -> str | None:
    """The allocator's path as the target names it (in its own root), None if not mapped."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and "x" in parts[1]:
                    path = parts[5].rstrip("\n")
                    if path == allocator or os.path.basename(path) == allocator:
                        return path
    except OSError:
        return None
    return None


def allocator_path(pid: int, allocator: str) -> str | None:
    """The allocator file of process ``pid`` as a path this process can open (its
    ``map_files`` link), None when it is not mapped (yet)."""
    if allocator == "exe":
        return f"/proc/{pid}/exe"
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                if len(parts) < 6 or "x" not in parts[1]:
                    continue
                path = parts[5].rstrip("\n")
                if path == allocator or os.path.basename(path) == allocator:
                    # The mapped file itself, as SECURITY.md asks (also a container's library).
                    return f"/proc/{pid}/map_files/{parts[0]}"
    except OSError as exc:
        raise TargetProblem(f"cannot read /proc/{pid}/maps: {exc.strerror}") from exc
    return None


_EINVAL_HINT = (
    " (EINVAL: is another tool probing these functions, e.g. bcc's memleak? bcc 0.26 registers "
    "uprobes with a stray reference-counter offset, iovisor/bcc#5236, and the kernel refuses "
    "uprobes at an address whose offsets differ)"
)


def _hint(exc: UprobeError) -> str:
    return _EINVAL_HINT if exc.errno == errno.EINVAL else ""


class Probes:
    """Uprobe fds per target process; ``prog_fds`` are the loaded, unattached programs."""

    def __init__(
        self,
        prog_fds: dict[str, int],
        log: logging.Logger,
        count: Callable[[str, int], None],
    ) -> None:
        self._progs = prog_fds
        self._log = log
        self._count = count
        self._fds: dict[int, list[int]] = {}
        self._offsets: dict[tuple[int, int], dict[str, int]] = {}

    def attach(self, pid: int, path: str) -> int:
        """Attach every allocator entry point found in ``path`` for ``pid``; how many."""
        self.detach(pid)
        try:
            st = os.stat(path)
            key = (st.st_dev, st.st_ino)
            offsets = self._offsets.get(key)
            if offsets is None:
                # Entry sites: free() starts with a test the kernel would single-step.
                offsets = symbol_offsets(path, (name for name, _, _ in PROBES), entry_sites=True)
                self._offsets[key] = offsets
        except (OSError, ElfError) as exc:
            raise TargetProblem(f"cannot read allocator {path}: {exc}") from exc
        if "malloc" not in offsets or "free" not in offsets:
            raise TargetProblem(f"{path} defines no malloc/free")
        fds: list[int] = []
        seen: set[int] = set()  # aliases (memalign = aligned_alloc) are probed once
        refused: list[tuple[str, UprobeError]] = []
        for name, entry, ret in PROBES:
            off = offsets.get(name)
            if off is None or off in seen:
                continue
            seen.add(off)
            pair: list[int] = []
            try:
                pair.append(open_uprobe(self._progs[entry], path, off, pid))
                if ret:
                    pair.append(open_uprobe(self._progs[ret], path, off, pid, ret=True))
            except UprobeError as exc:
                # Entry and return go together: an entry alone would leave the thread's
                # nesting depth raised (bpf/heap.bpf.c) and stop its sampling.
                for fd in pair:
                    os.close(fd)
                if name in ("malloc", "free"):
                    for fd in fds:
                        os.close(fd)
                    raise TargetProblem(f"{exc}{_hint(exc)}") from exc
                refused.append((name, exc))
                continue
            fds.extend(pair)
        if refused:
            # The rest is profiled: those functions' allocations are missing, said once.
            self._count("uprobes_refused", len(refused))
            self._log.warning(
                "heap receiver: pid=%d allocator functions not probed: %s%s",
                pid,
                ", ".join(f"{n} ({os.strerror(e.errno or 0)})" for n, e in refused),
                _hint(refused[0][1]),
            )
        self._fds[pid] = fds
        self._count("uprobes_attached", len(fds))
        return len(fds)

    def attached(self, pid: int) -> bool:
        return pid in self._fds

    def pids(self) -> list[int]:
        return list(self._fds)

    def detach(self, pid: int) -> None:
        for fd in self._fds.pop(pid, ()):
            os.close(fd)

    def close(self) -> None:
        for pid in list(self._fds):
            self.detach(pid)
