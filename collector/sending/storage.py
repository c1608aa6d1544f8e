"""A persistent sending queue on disk: one file per request, written atomically and fsynced.

Layout: ``<directory>/<quoted exporter id>/`` (mode 0700) holds ``lock`` (flock'ed by the
collector that owns the queue, with its pid) and ``<seq:016x>.req`` files. A file is written
as ``.tmp``, fsynced, renamed into place and the directory fsynced, so after a crash or
``kill -9`` a request is either whole on disk or not there at all; a leftover ``.tmp`` is an
incomplete write and is removed (counted). Each file carries a CRC-32 over its contents, so a
file damaged later (bad disk, a truncating copy, a hand edit) is detected when the queue is
opened or read, removed and counted: never a crash loop. Delivered (or definitively failed)
requests are removed. Delivery is at-least-once: a request sent just before a crash, whose
file was not yet removed, is sent again on the next start.

Why hand-written: the persistent-queue packages on PyPI (persist-queue, diskcache) give no
per-entry checksum or single-owner lock, and an SQLite file that is damaged fails as a whole.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from collector.errors import ConfigError

MAGIC = b"CQR1"
# magic, crc32 of everything after this header field, samples, payload length, type length
_HEAD = struct.Struct("<4sIQQH")
_BODY = struct.Struct("<QQH")  # the part of the header the CRC covers
SUFFIX = ".req"


@dataclass(slots=True)
class Entry:
    """A request on disk, as the queue keeps it in memory (the payload stays on disk)."""

    seq: int
    samples: int
    profile_type: str
    size: int  # payload bytes


@dataclass(slots=True)
class OpenReport:
    entries: list[Entry]
    corrupt: int = 0  # files with a bad magic, CRC or length: removed
    incomplete: int = 0  # .tmp files from a write a crash cut short: removed


class StorageCorrupt(Exception):
    """A request file failed its checks (removed by the caller's count)."""


def encode(samples: int, profile_type: str, payload: bytes) -> bytes:
    t = profile_type.encode()
    body = _BODY.pack(samples, len(payload), len(t))
    crc = zlib.crc32(payload, zlib.crc32(t, zlib.crc32(body)))
    return _HEAD.pack(MAGIC, crc, samples, len(payload), len(t)) + t + payload


def decode(blob: bytes) -> tuple[int, str, bytes]:
    """(samples, profile type, payload) of a file's bytes; StorageCorrupt when damaged."""
    if len(blob) < _HEAD.size:
        raise StorageCorrupt(f"truncated header ({len(blob)} bytes)")
    magic, crc, samples, plen, tlen = _HEAD.unpack_from(blob)
    if magic != MAGIC:
        raise StorageCorrupt(f"bad magic {magic!r}")
    if len(blob) != _HEAD.size + tlen + plen:
        raise StorageCorrupt(f"length {len(blob)} != {_HEAD.size + tlen + plen}")
    t = blob[_HEAD.size : _HEAD.size + tlen]
    payload = blob[_HEAD.size + tlen :]
    if zlib.crc32(payload, zlib.crc32(t, zlib.crc32(_BODY.pack(samples, plen, tlen)))) != crc:
        raise StorageCorrupt("CRC mismatch")
    try:
        return samples, t.decode(), payload
    except UnicodeDecodeError as e:
        raise StorageCorrupt(f"profile type is not UTF-8: {e}") from None


class QueueStorage:
    """The files of one exporter's queue. Blocking I/O: the queue calls it from a thread."""

    def __init__(self, directory: Path, component_id: str) -> None:
        self.base = Path(directory)
        self.dir = self.base / quote(component_id, safe="")
        self.id = component_id
        self._lock_fd: int | None = None
        self._next = 0

    def _path(self, seq: int) -> Path:
        return self.dir / f"{seq:016x}{SUFFIX}"

    def open(self) -> OpenReport:
        """Create (0700) and lock the directory, remove leftovers, check every file."""
        try:
            self.base.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.dir.mkdir(mode=0o700, exist_ok=True)
            os.chmod(self.dir, 0o700)  # queued profiles name every process on the host
        except OSError as e:
            raise ConfigError(
                f"exporters.{self.id}: sending_queue.storage.directory {self.base}: cannot "
                f"create {self.dir}: {e.strerror or e}"
            ) from None
        self._lock()
        report = OpenReport([])
        for p in sorted(self.dir.iterdir()):
            if p.name.endswith(".tmp"):
                report.incomplete += 1
                p.unlink(missing_ok=True)
                continue
            if not p.name.endswith(SUFFIX):
                continue
            try:
                seq = int(p.name[: -len(SUFFIX)], 16)
                samples, ptype, payload = decode(p.read_bytes())
            except (ValueError, StorageCorrupt):
                report.corrupt += 1
                p.unlink(missing_ok=True)
                continue
            report.entries.append(Entry(seq, samples, ptype, len(payload)))
            self._next = max(self._next, seq + 1)
        report.entries.sort(key=lambda e: e.seq)
        return report

    def _lock(self) -> None:
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise ConfigError(
                    f"exporters.{self.id}: sending_queue.storage.directory {self.base} is in "
                    f"use by another collector (pid {other}); give each collector its own "
                    "directory"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def put(self, payload: bytes, samples: int, profile_type: str) -> Entry:
        """Write one request durably; OSError (disk full, ...) when it could not be."""
        seq = self._next
        self._next += 1
        final = self._path(seq)
        tmp = final.with_name(final.name + ".tmp")
        blob = encode(samples, profile_type, payload)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.rename(tmp, final)
        dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)  # the rename itself must survive a power cut
        finally:
            os.close(dfd)
        return Entry(seq, samples, profile_type, len(payload))

    def read(self, entry: Entry) -> bytes:
        """The payload; StorageCorrupt (file removed) when it no longer checks out."""
        path = self._path(entry.seq)
        try:
            _, _, payload = decode(path.read_bytes())
        except (OSError, StorageCorrupt) as e:
            path.unlink(missing_ok=True)
            raise StorageCorrupt(f"{path.name}: {e}") from None
        return payload

    def remove(self, entry: Entry) -> None:
        # No directory fsync: a removal lost in a power cut resends the request, which
        # at-least-once delivery allows.
        self._path(entry.seq).unlink(missing_ok=True)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
