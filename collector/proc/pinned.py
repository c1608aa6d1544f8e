"""Open file descriptors to mapped binaries, so they can be read after the process exits or
the file is replaced or deleted."""

from __future__ import annotations

import os
import stat
import threading


class PinnedFile:
    """One mapped file held open. ``identity`` = (st_dev, st_ino, size, mtime_ns) keys caches
    so a binary replaced in place is never read with the old one's symbols."""

    __slots__ = ("_lock", "fd", "identity", "path", "refs")

    def __init__(self, fd: int, st: os.stat_result, path: str) -> None:
        self.fd = fd
        self.identity = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        self.path = path
        self.refs = 0
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def dup(self) -> int:
        """A new descriptor to the same file, owned by the caller (raises OSError if closed)."""
        with self._lock:
            if self.fd < 0:
                raise OSError("pinned file already released")
            return os.dup(self.fd)

    def pread(self, size: int, offset: int) -> bytes:
        with self._lock:
            if self.fd < 0:
                raise OSError("pinned file already released")
            return os.pread(self.fd, size, offset)

    def close(self) -> None:
        with self._lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1

    def __repr__(self) -> str:
        return f"PinnedFile(path={self.path!r}, fd={self.fd}, identity={self.identity})"


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
