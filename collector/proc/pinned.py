"""Open file descriptors to mapped binaries, so they can be read after the process exits or
the file is replaced or deleted."""

from __future__ import annotations

import os
import stat
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collector.proc.fdbudget import FdBudget

_PARKED = -2  # closed for the budget, reopened on use
_CLOSED = -1  # released for good


class PinnedFile:
    """One mapped file held open. ``identity`` = (st_dev, st_ino, size, mtime_ns) keys caches
    so a binary replaced in place is never read with the old one's symbols.

    Under an ``FdBudget`` the descriptor may be parked (closed to stay within the open-file
    limit); the next ``dup`` opens it again through the kernel references it was pinned by
    (/proc/PID/map_files/..., /proc/PID/exe: while that process lives) or, those gone, its
    path, accepted only if fstat shows the very same identity. ``close`` is final."""

    __slots__ = ("_budget", "_counters", "_lock", "_sources", "fd", "identity", "path", "refs")

    MAX_SOURCES = 4  # kernel references kept per file (several processes map one binary)

    def __init__(
        self,
        fd: int,
        st: os.stat_result,
        path: str,
        ref: str = "",
        budget: FdBudget | None = None,
    ) -> None:
        self.fd = fd
        self.identity = _ident(st)
        self.path = path
        self.refs = 0
        self._lock = threading.Lock()
        self._sources: list[str] = [ref] if ref else []
        self._budget = budget
        if budget is not None:
            budget.touch(self)

    @property
    def is_open(self) -> bool:
        """Holding its descriptor now (neither parked nor closed)."""
        return self.fd >= 0

    @property
    def closed(self) -> bool:
        """Released for good (a parked pin is not closed: it opens again on use)."""
        return self.fd == _CLOSED

    def add_source(self, ref: str) -> None:
        """Another kernel reference to the same file (another process mapping it)."""
        with self._lock:
            if ref in self._sources:
                return
            self._sources.append(ref)
            if len(self._sources) > self.MAX_SOURCES:
                del self._sources[0]  # the oldest process is the likeliest gone

    def dup(self) -> int:
        """A new descriptor to the same file, owned by the caller (OSError if it was closed,
        or was parked and can no longer be reopened as the same file)."""
        with self._lock:
            if self.fd == _CLOSED:
                raise OSError("pinned file already released")
            if self.fd == _PARKED:
                self.fd = self._reopen()
                reopened = True
            else:
                reopened = False
            fd = os.dup(self.fd)
        if self._budget is not None:
            if reopened:
                self._budget.counters.add("processes", "pin_reopened")
            self._budget.touch(self)
        return fd

    def pread(self, size: int, offset: int) -> bytes:
        fd = self.dup()
        try:
            return os.pread(fd, size, offset)
        finally:
            os.close(fd)

    def park(self) -> bool:
        """Close the descriptor but keep the way back (the budget's LRU choice)."""
        with self._lock:
            if self.fd < 0:
                return False
            os.close(self.fd)
            self.fd = _PARKED
            return True

    def close(self) -> None:
        with self._lock:
            if self.fd >= 0:
                os.close(self.fd)
            self.fd = _CLOSED
        if self._budget is not None:
            self._budget.forget(self)

    def _reopen(self) -> int:
        """Lock held. Kernel references first (newest process first), then the path."""
        for ref in reversed(self._sources):
            try:
                st = stat_regular(ref)
                if _ident(st) == self.identity:
                    fd, fst = open_regular(ref, st)
                    if _ident(fst) == self.identity:
                        return fd
                    os.close(fd)
            except PinError:
                continue
        fd = self._reopen_path()
        if fd >= 0:
            return fd
        if self._budget is not None:
            self._budget.counters.add("processes", "pin_reopen_failed")
        raise OSError(f"parked pin of {self.path} cannot be reopened as the same file")

    def _reopen_path(self) -> int:
        """The path is only a label (resolved in our mount namespace, pointable anywhere): it
        is opened O_PATH, which has no side effects even on a device or FIFO, and the file is
        read only if that very inode has the pinned identity; -1 otherwise."""
        try:
            probe = os.open(self.path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return -1
        try:
            st = os.fstat(probe)
            if not stat.S_ISREG(st.st_mode) or _ident(st) != self.identity:
                return -1
            fd, fst = open_regular(f"/proc/self/fd/{probe}", st)
            if _ident(fst) == self.identity:
                return fd
            os.close(fd)
            return -1
        except (OSError, PinError):
            return -1
        finally:
            os.close(probe)

    def __repr__(self) -> str:
        return f"PinnedFile(path={self.path!r}, fd={self.fd}, identity={self.identity})"


def _ident(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class PinError(Exception):
    """A file could not be pinned; ``reason`` is the counter it is counted under."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


def map_files_path(pid: int, start: int, end: int) -> str:
    """The kernel's own reference to the file mapped at [start, end) of ``pid``.

    It names the exact mapped inode, even when the file was deleted, replaced, or lives in
    another mount namespace. The path string in /proc/PID/maps is never opened instead: it is
    resolved in the target's namespace and a user can point it (or a symlink on it) anywhere.
    """
    return f"/proc/{pid}/map_files/{start:x}-{end:x}"


def stat_regular(ref: str) -> os.stat_result:
    """stat (not open) of a /proc reference, which must be a regular file: opening a FIFO
    blocks and opening a device can have side effects, so neither is ever opened."""
    try:
        st = os.stat(ref)
    except OSError as e:
        raise PinError("pin_failed", str(e)) from e
    if not stat.S_ISREG(st.st_mode):
        raise PinError("pin_not_regular", f"{ref} is not a regular file")
    return st


def open_regular(ref: str, expect: os.stat_result) -> tuple[int, os.stat_result]:
    """Open ``ref`` read-only and check by fstat that it is still the file ``expect`` describes
    (the mapping may have changed since it was stat-ed). Returns (fd, fstat of fd)."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    try:
        fd = os.open(ref, flags)
    except OSError as e:
        raise PinError("pin_failed", str(e)) from e
    try:
        st = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        raise PinError("pin_failed", str(e)) from e
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (expect.st_dev, expect.st_ino):
        os.close(fd)
        raise PinError("pin_changed", f"{ref} changed between stat and open")
    return fd, st
