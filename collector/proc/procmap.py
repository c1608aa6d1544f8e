"""A process's executable mappings from the PROCMAP_QUERY ioctl of /proc/<pid>/maps (Linux 6.11+).

The text of /proc/<pid>/maps makes the kernel format every mapping of the process (a Python
process has ~100 lines, 20 of them executable) and us split them again: a third of a new
process's snapshot. The ioctl asks the kernel for the next executable mapping at or after an
address and answers in a fixed struct (include/uapi/linux/fs.h, ``struct procmap_query``), so
only executable mappings cost anything. Kernels without it answer ENOTTY (or EINVAL for a
struct size they do not know): then ``supported()`` turns false and callers read the text.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
import threading
from typing import NamedTuple

# _IOWR('f', 17, struct procmap_query): 3 << 30 | sizeof 104 << 16 | 'f' << 8 | 17.
PROCMAP_QUERY = 0xC0686611
# size, query_flags, query_addr, vma_start, vma_end, vma_flags, vma_page_size, vma_offset,
# inode (u64 each); dev_major, dev_minor, vma_name_size, build_id_size (u32);
# vma_name_addr, build_id_addr (u64).
_QUERY = struct.Struct("=9Q4I2Q")
VMA_READABLE, VMA_WRITABLE, VMA_EXECUTABLE, VMA_SHARED = 0x01, 0x02, 0x04, 0x08
COVERING_OR_NEXT_VMA = 0x10
_FLAGS = VMA_EXECUTABLE | COVERING_OR_NEXT_VMA
_OUT_ZEROS = (0,) * 8  # vma_start .. dev_minor: written by the kernel
NAME_MAX_BYTES = 4096  # PATH_MAX: d_path of a longer path fails (ENAMETOOLONG)
# No address space (a kernel thread, or a process past exit_mm): what the text says with an
# empty file, so it is an empty answer here too, not "gone".
_NO_MM = errno.ESRCH
_UNSUPPORTED = (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP)


class Vma(NamedTuple):
    start: int
    end: int
    flags: int  # VMA_* bits
    offset: int
    inode: int
    dev: int  # major << 32 | minor, as the maps line's device column
    name: str  # the path (a label, never opened), "[vdso]", or "" for anonymous code


class Unavailable(Exception):
    """The kernel has no PROCMAP_QUERY, or it refused this process's query: read the text."""


class _Buffers(threading.local):
    """One query struct and name buffer per thread (the reader and the unwind worker both
    snapshot processes)."""

    def __init__(self) -> None:
        self.query = bytearray(_QUERY.size)
        self.name = ctypes.create_string_buffer(NAME_MAX_BYTES)
        self.name_addr = ctypes.addressof(self.name)


_buffers = _Buffers()
_state = {"supported": True}


def supported() -> bool:
    """False once a query said this kernel has no PROCMAP_QUERY."""
    return _state["supported"]


def disable() -> None:
    """Use the text of /proc/<pid>/maps from now on (tests; kernels without the ioctl)."""
    _state["supported"] = False


def enable() -> None:
    _state["supported"] = True


def executable_vmas(pid: int, proc: str = "/proc") -> list[Vma] | None:
    """Every executable mapping of ``pid`` in address order (none for a kernel thread or a
    process past its exit, as the text says); None if it is gone or unreadable. Raises
    ``Unavailable`` when the kernel has no ioctl (``supported()`` is then false) or a name
    did not fit: the caller reads the text."""
    try:
        fd = os.open(f"{proc}/{pid}/maps", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    try:
        return _query_all(fd)
    finally:
        os.close(fd)


def _query_all(fd: int) -> list[Vma] | None:
    bufs = _buffers
    query, name, name_addr = bufs.query, bufs.name, bufs.name_addr
    pack, unpack = _QUERY.pack_into, _QUERY.unpack
    out: list[Vma] = []
    addr = 0
    while True:
        pack(query, 0, _QUERY.size, _FLAGS, addr, *_OUT_ZEROS, NAME_MAX_BYTES, 0, name_addr, 0)
        try:
            fcntl.ioctl(fd, PROCMAP_QUERY, query, True)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return out  # no executable mapping at or above addr
            if e.errno == _NO_MM:
                return out
            if e.errno in _UNSUPPORTED and not out:
                disable()
            raise Unavailable(os.strerror(e.errno or 0)) from e
        (_, _, _, start, end, flags, _, offset, inode, major, minor, name_size, *_) = unpack(query)
        if end <= start or end <= addr:
            raise Unavailable("mapping out of order")  # never from a correct kernel
        label = ""
        if name_size:  # the kernel's count includes the terminating NUL
            label = name.raw[: min(name_size, NAME_MAX_BYTES) - 1].decode("utf-8", "replace")
        out.append(Vma(start, end, flags, offset, inode, major << 32 | minor, label))
        addr = end
