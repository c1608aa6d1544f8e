"""SymCaches on disk, so a restart does not rebuild them (0.25 s for libc's debug file).

One file per (build id, identity of the file the cache was built from): the build id alone
is bytes inside a binary a user wrote, so a hostile copy claiming libc's build id could
otherwise plant wrong names for every later libc. The identity (dev, inode, size, mtime) of
the source file survives a restart and cannot be taken by another file.

The directory is created 0700 (the collector runs as root; caches describe other users'
binaries). Files are written to a temporary name and renamed (a crash leaves no half file),
and read back mapped (``SymCache.open`` on the descriptor that was checked): a lookup touches
a few pages of a file that can be tens of MB (libc's debug file: 20 MB), clean pages the
kernel can drop, where reading it whole kept every byte in the collector's anonymous memory
(34 MB after an exec storm). Nothing here truncates a file in place (writes rename, eviction
unlinks, and an unlinked file stays whole while mapped), so the SIGBUS a truncated mapping
would raise needs someone else with root writing into this 0700 directory. A file that
symbolic refuses (bad magic, version, truncated) or that is larger than the whole budget is
deleted and rebuilt (counted ``symcache_corrupt``). The total size is bounded by
``max_bytes``: the least recently used files go first.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable

from symbolic import SymCache

_SUFFIX = ".symc"
_MAGIC_LEN = 4  # "SYMC"


def default_dir() -> str:
    # systemd's CacheDirectory= sets CACHE_DIRECTORY (the only writable place under
    # ProtectSystem=strict); then root's /var/cache, else the user's XDG cache.
    systemd = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
    if systemd:
        return os.path.join(systemd, "symcache")
    xdg = os.environ.get("XDG_CACHE_HOME")
    if os.geteuid() != 0 and xdg:
        return os.path.join(xdg, "ebpf-profile-collector", "symcache")
    if os.geteuid() != 0:
        return os.path.join(os.path.expanduser("~"), ".cache", "ebpf-profile-collector", "symcache")
    return "/var/cache/ebpf-profile-collector/symcache"


def cache_key(build_id: str, identity: tuple[int, ...]) -> str:
    ident = ",".join(str(x) for x in identity)
    digest = hashlib.sha256(f"{build_id}|{ident}".encode()).hexdigest()[:32]
    return digest


class SymCacheStore:
    """Bounded directory of SymCache files. Not thread-safe (one symbolizer, under its lock)."""

    def __init__(
        self,
        directory: str,
        max_bytes: int,
        log: logging.Logger | None = None,
        count: Callable[[str], None] | None = None,
    ) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.log = log or logging.getLogger(__name__)
        self._count = count or (lambda _name: None)
        self._write_failure_logged = False
        self.usable = False
        self.error = ""
        if max_bytes <= 0 or not directory:
            return
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            st = os.stat(directory)
            if st.st_uid != os.geteuid() or st.st_mode & 0o077:
                os.chmod(directory, 0o700)  # ours, or refused below
                st = os.stat(directory)
                if st.st_uid != os.geteuid() or st.st_mode & 0o077:
                    raise OSError(f"{directory} is not private to this user")
            self.usable = True
        except OSError as e:
            self.error = str(e)
            self.log.warning(
                "symcache dir unusable dir=%s error=%s (kept in memory only)", directory, e
            )

    def _path(self, key: str) -> str:
        return os.path.join(self.dir, key + _SUFFIX)

    def load(self, key: str) -> tuple[SymCache | None, int, bool]:
        """(cache, its size in bytes, corrupt?); (None, 0, False) when not on disk."""
        if not self.usable:
            return None, 0, False
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None, 0, False
        try:
            size = os.fstat(fd).st_size
            if not _MAGIC_LEN <= size <= self.max_bytes:
                raise ValueError("size out of bounds")
            # Through the descriptor just checked, not the path (which could be replaced).
            cache = SymCache.open(f"/proc/self/fd/{fd}")
            if not cache.is_latest_version:
                raise ValueError("older symcache format")
        except Exception:  # symbolic refuses it (any of its errors) or the size check failed
            self._remove(path)
            return None, 0, True
        finally:
            os.close(fd)  # the mapping keeps the file
        with contextlib.suppress(OSError):
            os.utime(path)  # most recently used: evicted last
        return cache, size, False

    def save(self, key: str, data: bytes) -> bool:
        if not self.usable or len(data) > self.max_bytes:
            return False
        try:
            self._make_room(len(data))
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=_SUFFIX)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self._path(key))
            except BaseException:
                self._remove(tmp)
                raise
        except OSError as e:
            self._count("symcache_write_failed")
            if not self._write_failure_logged:  # a full disk fails every write: log once
                self._write_failure_logged = True
                self.log.warning(
                    "cannot write symcache dir=%s error=%s (counted as symcache_write_failed)",
                    self.dir,
                    e,
                )
            return False
        return True

    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _entries(self) -> list[tuple[float, int, str]]:
        out = []
        try:
            with os.scandir(self.dir) as it:
                for e in it:
                    if e.name.endswith(_SUFFIX) and e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        out.append((st.st_mtime, st.st_size, e.path))
        except OSError:
            self._count("symcache_list_failed")  # the size bound cannot be applied this time
            return []
        return out

    def _make_room(self, need: int) -> None:
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total + need <= self.max_bytes:
                break
            self._remove(path)
            total -= size

    @staticmethod
    def _remove(path: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(path)
