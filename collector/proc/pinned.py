"""Open file descriptors to mapped binaries, so they can be read after the process exits or
the file is replaced or deleted."""

from __future__ import annotations

import os
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


def open_mapped(pid: int, start: int, end: int, path: str) -> tuple[os.stat_result, str] | None:
    """stat of the file mapped at [start, end) and the path to open it by.

    /proc/<pid>/map_files/ names the exact mapped file even when it was deleted or replaced
    on disk; the plain path is a fallback when map_files is not readable.
    """
    mf = f"/proc/{pid}/map_files/{start:x}-{end:x}"
    try:
        return os.stat(mf), mf
    except OSError:
        pass
    if path.startswith("/") and not path.endswith(" (deleted)"):
        try:
            return os.stat(path), path
        except OSError:
            return None
    return None
