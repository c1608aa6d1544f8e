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

from collector.proc.mapline import PERMS, MapLine

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


class Unavailable(Exception):
    """The kernel has no PROCMAP_QUERY, or it refused this process's query: read the text."""


class _Buffers(threading.local):
    """One query struct and name buffer per thread (the reader and the unwind worker both
    snapshot processes)."""

    def __init__(self) -> None:
        self.query = bytearray(_QUERY.size)
        self.name = ctypes.create_string_buffer(NAME_MAX_BYTES)
        self.name_view = memoryview(self.name).cast("B")
        # The struct as u64 and u32 words: only query_addr and vma_name_size are set per
        # query (the kernel writes the rest), and the answer is read by index, not unpacked.
        self.q64 = memoryview(self.query).cast("Q")
        self.q32 = memoryview(self.query).cast("I")
        _QUERY.pack_into(
            self.query, 0, _QUERY.size, _FLAGS, 0, *_OUT_ZEROS, 0, 0, ctypes.addressof(self.name), 0
        )


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


def executable_vmas(pid: int, proc: str = "/proc") -> list[MapLine] | None:
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


# Word indexes into struct procmap_query (see _QUERY).
_ADDR, _START, _END, _VFLAGS, _OFFSET, _INODE = 2, 3, 4, 5, 7, 8  # u64 words
_MAJOR, _MINOR, _NAME_SIZE = 18, 19, 20  # u32 words (bytes 72-83)


def _query_all(fd: int) -> list[MapLine] | None:
    bufs = _buffers
    query, q64, q32, name = bufs.query, bufs.q64, bufs.q32, bufs.name_view
    out: list[MapLine] = []
    addr = 0
    while True:
        q64[_ADDR] = addr
        q32[_NAME_SIZE] = NAME_MAX_BYTES  # in: the buffer's size; out: the name's, with NUL
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
        start, end, name_size = q64[_START], q64[_END], q32[_NAME_SIZE]
        if end <= start or end <= addr:
            raise Unavailable("mapping out of order")  # never from a correct kernel
        label = ""
        if name_size:  # the kernel's count includes the terminating NUL
            label = str(name[: min(name_size, NAME_MAX_BYTES) - 1], "utf-8", "replace")
        dev = q32[_MAJOR] << 32 | q32[_MINOR]
        perms = PERMS[q64[_VFLAGS] & 0x0F]
        out.append(MapLine(start, end, perms, q64[_OFFSET], q64[_INODE], label, dev))
        addr = end
