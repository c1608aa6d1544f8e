"""Many small reads of another process's memory in few syscalls (process_vm_readv).

The go_runtime receiver checks which goroutines it saw created are still alive by reading
each one's runtime.g (its goid and status) at snapshot time, instead of trapping at every
goroutine exit: one syscall per 1024 goroutines. Reading needs the same rights as ptrace
(root here); nothing is written.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Sequence

IOV_MAX = 1024


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_readv = _libc.process_vm_readv
_readv.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(_Iovec),
    ctypes.c_ulong,
    ctypes.POINTER(_Iovec),
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_readv.restype = ctypes.c_ssize_t


def read_many(pid: int, addresses: Sequence[int], size: int) -> list[bytes | None]:
    """``size`` bytes at each of ``addresses`` in process ``pid`` (None where unreadable).
    ProcessLookupError if the process is gone."""
    out: list[bytes | None] = []
    i = 0
    while i < len(addresses):
        chunk = addresses[i : i + IOV_MAX]
        n = len(chunk)
        buf = ctypes.create_string_buffer(n * size)
        local, remote = (_Iovec * n)(), (_Iovec * n)()
        base = ctypes.addressof(buf)
        for j, address in enumerate(chunk):
            local[j].base, local[j].len = base + j * size, size
            remote[j].base, remote[j].len = address, size
        got = _readv(pid, local, n, remote, n, 0)
        if got < 0:
            err = ctypes.get_errno()
            if err == errno.ESRCH:
                raise ProcessLookupError(err, os.strerror(err))
            got = 0  # EFAULT: the first address is unreadable
        whole = got // size  # the kernel stops at the first address it cannot read
        raw = buf.raw
        out.extend(raw[j * size : (j + 1) * size] for j in range(whole))
        if whole < n:
            out.append(None)  # that one; go on after it
            whole += 1
        i += whole
    return out
