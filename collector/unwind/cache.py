"""Built unwind tables on disk, keyed by binary (build id), so a restart does not build again.

A table costs 0.1-0.3 s of CPU to build for a common library (seconds for a 100 MB one) and a
few milliseconds to read back. The cache is an optimisation, never an authority: a file is
used only if everything checks (owner, permissions, size, a SHA-256 over the whole file, the
key it says it holds, row count, rows in order, every row's kind a value the builder writes);
anything else is counted (``cache_rejected``), deleted when we may, and the table is built
again. Its size is bounded (least recently used files go first). A directory we cannot create
or write (read-only file system, no permission, full disk) turns writing off with one log line.

File: MAGIC, version, base, row count, key and path lengths, key, path, rows (8 bytes each, as
the BPF array holds them), SHA-256 of all that.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import stat
import struct
import tempfile
from array import array
from pathlib import Path

from collector.unwind import layout as L
from collector.unwind.breakpad import CfiStats, Rows
from collector.unwind.table import UnwindTable

# Bump when the rows a build yields change meaning (layout, rules, stop ranges): old files then
# no longer match and are rebuilt and replaced.
FORMAT_VERSION = 2  # 2: the ELF entry point is a stop row (end), not a gap
MAGIC = b"CUWT"
_HEAD = struct.Struct("<4sIQIHH")
_DIGEST = 32
SUFFIX = ".uwt"
DEFAULT_MAX_BYTES = 256 << 20
_MAX_KEY = 512
_CHUNK = 65536  # rows checked at a time
_MAX_PATH = 4096
# Every kind byte breakpad.build_rows can write: a CFA rule with an rbp rule, or a stop reason.
_VALID_KINDS = frozenset(
    [L.kind(c, r) for c in (L.CFA_RSP, L.CFA_RBP) for r in (L.RBP_SAME, L.RBP_SAVED, L.RBP_UNKNOWN)]
    + [L.kind(L.CFA_STOP, reason=n) for n in range(len(L.REASONS))]
)
log = logging.getLogger(__name__)


def _reject(why: str) -> ValueError:
    return ValueError(why)


def decode(data: bytes, key: str) -> tuple[int, str, array]:
    """(base, path, rows) from a cache file's bytes, or ValueError saying what is wrong.
    Works on views of ``data`` (no copy of a libLLVM's 7.6 MB of rows)."""
    if len(data) < _HEAD.size + _DIGEST:
        raise _reject("short file")
    view = memoryview(data)
    body, digest = view[:-_DIGEST], view[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise _reject("checksum")
    magic, version, base, count, key_len, path_len = _HEAD.unpack_from(body)
    if magic != MAGIC or version != FORMAT_VERSION:
        raise _reject("magic or version")
    if not 0 < count <= L.MAX_TABLE_ROWS or key_len > _MAX_KEY or path_len > _MAX_PATH:
        raise _reject("bounds")
    if len(body) != _HEAD.size + key_len + path_len + count * L.ROW.size:
        raise _reject("size")
    off = _HEAD.size
    if body[off : off + key_len] != key.encode():
        raise _reject("key")  # another binary's table under this name: never use it
    off += key_len
    path = bytes(body[off : off + path_len]).decode(errors="replace")
    raw = body[off + path_len :]
    if not set(bytes(raw[7 :: L.ROW.size])) <= _VALID_KINDS:  # a C-speed copy, then a C loop
        raise _reject("row kind")
    _check_order(raw)
    rows = array("Q")
    rows.frombytes(raw)
    return base, path, rows


def _check_order(raw: memoryview) -> None:
    """Row pcs (the low u32 of each little-endian row) start at 0 and never go down: the BPF
    binary search needs them sorted. In chunks, so a million rows never become a million
    Python ints at once (36 MB that the allocator would keep)."""
    words = array("I")
    words.frombytes(raw)  # array slices with a step are C loops; strided memoryviews are not
    prev = 0
    for at in range(0, len(words), 2 * _CHUNK):
        chunk = words[at : at + 2 * _CHUNK : 2].tolist()
        if (at == 0 and chunk[0] != 0) or chunk[0] < prev or chunk != sorted(chunk):
            raise _reject("rows out of order")
        prev = chunk[-1]


def _read_all(fd: int, size: int) -> bytes:
    """The file's ``size`` bytes (no second descriptor: every one counts at a low limit)."""
    chunks, left = [], size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def encode(table: UnwindTable) -> bytes:
    key, path = table.key.encode(), table.path.encode(errors="replace")[:_MAX_PATH]
    head = _HEAD.pack(MAGIC, FORMAT_VERSION, table.base, len(table), len(key), len(path))
    body = b"".join((head, key, path, table.rows.tobytes()))
    return body + hashlib.sha256(body).digest()


class TableCache:
    """``directory`` holds at most ``max_bytes`` of tables; created 0700 if missing."""

    def __init__(self, directory: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._writable = True
        self._usable: bool | None = None  # checked at first use
        self._logged = False
        self.counters = dict.fromkeys(
            ("cache_hits", "cache_misses", "cache_rejected", "cache_writes"), 0
        )
        self.counters.update(cache_write_failed=0, cache_evicted=0)

    def _file(self, key: str) -> Path:
        name = hashlib.sha256(f"{FORMAT_VERSION}\0{key}".encode()).hexdigest()[:40]
        return self.directory / (name + SUFFIX)

    def _check_dir(self) -> bool:
        """Usable only if it is our own directory that nobody else may write into."""
        if self._usable is None:
            try:
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                self._disable(f"cannot create it: {exc.strerror}", loads=True)
                return False
            st = os.lstat(self.directory)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
                self._disable("not a directory of ours that only we may write", loads=True)
                return False
            self._usable = True
        return self._usable

    def _disable(self, why: str, loads: bool = False) -> None:
        if not self._logged:  # one line, whatever else fails after it
            self._logged = True
            log.warning("unwind table cache off dir=%s: %s", self.directory, why)
        self._writable = False
        if loads:
            self._usable = False

    def load(self, key: str) -> UnwindTable | None:
        """The cached table for ``key``, or None (absent, or rejected: counted)."""
        if not self._check_dir():
            return None
        path = self._file(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            self.counters["cache_misses"] += 1
            return None
        try:
            st = os.fstat(fd)
            limit = _HEAD.size + _MAX_KEY + _MAX_PATH + L.MAX_TABLE_ROWS * L.ROW.size + _DIGEST
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
                raise _reject("owner or mode")
            if st.st_size > limit:
                raise _reject("too large")
            data = _read_all(fd, st.st_size)
            base, src, rows = decode(data, key)
        except (OSError, ValueError):
            self.counters["cache_rejected"] += 1
            self._unlink(path)
            return None
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: evicted last
        self.counters["cache_hits"] += 1
        return UnwindTable(key, src, Rows(base, rows, CfiStats(rows=len(rows))), 0.0, True)

    def save(self, table: UnwindTable) -> None:
        if not self._writable or not self._check_dir():
            return
        data = encode(table)
        if len(data) > self.max_bytes:
            return  # it would evict everything else and still not fit
        tmp = ""
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=SUFFIX)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self._file(table.key))  # readers see the old file or the new one
        except OSError as exc:
            self.counters["cache_write_failed"] += 1
            if tmp:
                self._unlink(Path(tmp))
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT):
                self._disable(f"cannot write: {exc.strerror}")
            return
        self.counters["cache_writes"] += 1
        self._trim()

    def _trim(self) -> None:
        """Least recently used files first, until the rest fits the bound."""
        files = []
        try:
            with os.scandir(self.directory) as it:
                for e in it:
                    if e.name.endswith(SUFFIX) and e.is_file(follow_symlinks=False):
                        st = e.stat(follow_symlinks=False)
                        files.append((st.st_mtime_ns, st.st_size, e.path))
        except OSError:
            return
        total = sum(size for _, size, _ in files)
        if total <= self.max_bytes:
            return
        for _, size, p in sorted(files):
            if total <= self.max_bytes:
                break
            if self._unlink(Path(p)):
                total -= size
                self.counters["cache_evicted"] += 1

    @staticmethod
    def _unlink(path: Path) -> bool:
        try:
            path.unlink()
            return True
        except OSError:
            return False

    def stats(self) -> dict[str, int]:
        return dict(self.counters)
