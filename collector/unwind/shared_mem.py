"""A BPF_F_MMAPABLE array mapped into this process without holding a descriptor.

Python's ``mmap.mmap`` keeps a dup of the file descriptor for the mapping's lifetime; the
unwind tables' two arrays would hold two more descriptors for nothing (the mapping alone keeps
the BPF map alive), and under a low open-file limit (64) every descriptor is a pin fewer. So
the mapping is made with libc's mmap(2) and handed out as a writable memoryview.
"""

from __future__ import annotations

import ctypes
import mmap
import os

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


class SharedMapping:
    """``size`` bytes of ``fd`` mapped shared, read-write. ``view`` is valid until
    ``close``; whoever took slices of it must have released them by then."""

    def __init__(self, fd: int, size: int) -> None:
        size = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        addr = _libc.mmap(None, size, prot, mmap.MAP_SHARED, fd, 0)
        if addr is None or addr == _MAP_FAILED:
            err = ctypes.get_errno()
            raise OSError(err, f"mmap of a BPF array failed: {os.strerror(err)}")
        self._addr: int | None = addr
        self.size = size
        self.view = memoryview((ctypes.c_char * size).from_address(addr)).cast("B")

    def close(self) -> None:
        if self._addr is None:
            return
        self.view.release()
        _libc.munmap(self._addr, self.size)
        self._addr = None
