"""The few bpf(2) map commands the collector needs, over ctypes, so the collector process never
imports bcc (which costs ~77 MB of RSS)."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import struct

SYS_BPF = 321  # x86-64
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_OBJ_GET_INFO_BY_FD = 15

BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2

# Map types we read (linux/bpf.h enum bpf_map_type).
MAP_TYPE_HASH = 1
MAP_TYPE_ARRAY = 2
MAP_TYPE_PERCPU_HASH = 5
MAP_TYPE_PERCPU_ARRAY = 6
MAP_TYPE_STACK_TRACE = 7
MAP_TYPE_LRU_HASH = 9
MAP_TYPE_LRU_PERCPU_HASH = 10
MAP_TYPE_RINGBUF = 27
PERCPU_TYPES = frozenset({MAP_TYPE_PERCPU_HASH, MAP_TYPE_PERCPU_ARRAY, MAP_TYPE_LRU_PERCPU_HASH})

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]


class _ElemAttr(ctypes.Structure):
    # union bpf_attr, the map element commands' member.
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),  # or next_key
        ("flags", ctypes.c_uint64),
    ]


class BpfError(OSError):
    """A bpf(2) command failed; ``errno`` says why."""


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    ret = _libc.syscall(SYS_BPF, cmd, ctypes.addressof(attr), ctypes.sizeof(attr))
    if ret < 0:
        err = ctypes.get_errno()
        raise BpfError(err, f"bpf(cmd={cmd}): {os.strerror(err)}")
    return ret


def _addr(buf: ctypes.Array | None) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


@functools.cache
def possible_cpus() -> int:
    """Number of possible CPUs: the per-CPU value stride count (not the online count)."""
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


class Map:
    """A BPF map fd with its shape. Keys and values are bytes of the map's sizes.

    For per-CPU maps ``lookup`` returns the values of every possible CPU concatenated,
    each padded to 8 bytes (``percpu_values`` splits them).
    """

    def __init__(
        self, fd: int, map_type: int, key_size: int, value_size: int, max_entries: int, name: str
    ) -> None:
        self.fd = fd
        self.map_type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.name = name
        self.percpu = map_type in PERCPU_TYPES
        self._stride = (value_size + 7) & ~7
        self._value_len = self._stride * possible_cpus() if self.percpu else value_size
        self._key = ctypes.create_string_buffer(max(key_size, 1))
        self._next = ctypes.create_string_buffer(max(key_size, 1))
        self._value = ctypes.create_string_buffer(max(self._value_len, 1))
        self._attr = _ElemAttr(map_fd=fd)
        self._owns_fd = True

    def twin(self) -> Map:
        """A second handle on the same map for another thread: its own key, value and attr
        buffers (one handle must not be used by two threads at once). It shares the fd and
        does not own it: closing the twin leaves the map open."""
        twin = Map(
            self.fd, self.map_type, self.key_size, self.value_size, self.max_entries, self.name
        )
        twin._owns_fd = False
        return twin

    def __repr__(self) -> str:
        return f"Map(name={self.name!r}, fd={self.fd}, type={self.map_type})"

    def _set_key(self, key: bytes) -> None:
        if len(key) != self.key_size:
            raise ValueError(f"map {self.name}: key is {len(key)} bytes, want {self.key_size}")
        ctypes.memmove(self._key, key, self.key_size)

    def lookup(self, key: bytes) -> bytes | None:
        """The value for ``key``, or None when absent."""
        self._set_key(key)
        a = self._attr
        a.key, a.value, a.flags = _addr(self._key), _addr(self._value), 0
        try:
            _bpf(BPF_MAP_LOOKUP_ELEM, a)
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return self._value.raw[: self._value_len]

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        self._set_key(key)
        if len(value) != self._value_len:
            raise ValueError(
                f"map {self.name}: value is {len(value)} bytes, want {self._value_len}"
            )
        ctypes.memmove(self._value, value, self._value_len)
        a = self._attr
        a.key, a.value, a.flags = _addr(self._key), _addr(self._value), flags
        _bpf(BPF_MAP_UPDATE_ELEM, a)

    def delete(self, key: bytes) -> bool:
        """Delete ``key``; False when it was not there."""
        self._set_key(key)
        a = self._attr
        a.key, a.value, a.flags = _addr(self._key), 0, 0
        try:
            _bpf(BPF_MAP_DELETE_ELEM, a)
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    def keys(self) -> list[bytes]:
        """A snapshot of the keys (the map can change while we walk it)."""
        out: list[bytes] = []
        a = self._attr
        a.key, a.value, a.flags = 0, _addr(self._next), 0  # key NULL: first key
        while True:
            try:
                _bpf(BPF_MAP_GET_NEXT_KEY, a)
            except BpfError as exc:
                if exc.errno == errno.ENOENT:
                    return out
                raise
            key = self._next.raw[: self.key_size]
            out.append(key)
            ctypes.memmove(self._key, key, self.key_size)
            a.key = _addr(self._key)
            if len(out) > 4 * self.max_entries + 16:  # keys churn under us: stop, never spin
                return out

    def clear(self) -> int:
        """Delete every key; returns how many were deleted."""
        return sum(1 for k in self.keys() if self.delete(k))

    def percpu_values(self, raw: bytes) -> list[bytes]:
        s = self._stride
        return [raw[i * s : i * s + self.value_size] for i in range(len(raw) // s)]

    def percpu_u64_sum(self, key: bytes) -> int:
        """Sum over CPUs of a per-CPU u64 value (0 when absent)."""
        if self.value_size != 8:
            raise ValueError(f"map {self.name}: values are {self.value_size} bytes, not u64")
        raw = self.lookup(key)
        return 0 if raw is None else sum(v for (v,) in struct.iter_unpack("<Q", raw))

    def close(self) -> None:
        if self.fd >= 0 and self._owns_fd:
            os.close(self.fd)
        self.fd = -1


_PR_SET_NAME = 15


def name_thread(name: str) -> None:
    """Name the calling OS thread (15 bytes max) so top, py-spy and /proc/<pid>/task show
    which thread is the reader; best effort."""
    _libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
