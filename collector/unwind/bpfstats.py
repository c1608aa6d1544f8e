"""Run time per BPF program from the kernel's bpf_stats, without bpftool.

The loader hands back map and attachment fds but not program fds, so a program is found by
walking program ids (BPF_PROG_GET_NEXT_ID) for the one with the given name that uses a given
map. Needs ``sysctl kernel.bpf_stats_enabled=1`` for run_time_ns/run_cnt to move.
"""

from __future__ import annotations

import ctypes
import os
import struct
from contextlib import suppress

from collector.bpf import BpfError, Map

BPF_PROG_GET_NEXT_ID = 11
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
_PROG_INFO_SIZE = 232
_STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"
SYS_BPF = 321  # x86-64

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    ret = _libc.syscall(SYS_BPF, cmd, ctypes.addressof(attr), ctypes.sizeof(attr))
    if ret < 0:
        err = ctypes.get_errno()
        raise BpfError(err, f"bpf(cmd={cmd}): {os.strerror(err)}")
    return ret


class _IdAttr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("flags", ctypes.c_uint32)]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


def _info(fd: int, size: int, prep: bytes = b"") -> bytes:
    buf = ctypes.create_string_buffer(prep.ljust(size, b"\0"), size)
    attr = _InfoAttr(fd=fd, info_len=size, info=ctypes.addressof(buf))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return buf.raw


def map_id(m: Map) -> int:
    return struct.unpack_from("<I", _info(m.fd, 80), 4)[0]


def _prog_ids() -> list[int]:
    out, attr = [], _IdAttr()
    while True:
        try:
            _bpf(BPF_PROG_GET_NEXT_ID, attr)
        except BpfError:
            return out
        out.append(attr.next_id)
        attr.id = attr.next_id


def prog_stats(name: str, uses: Map) -> tuple[int, int] | None:
    """(run_time_ns, run_cnt) of the program called ``name`` (15 chars at most are kept by
    the kernel) that uses map ``uses``; None if there is none."""
    want = map_id(uses)
    for pid in _prog_ids():
        try:
            fd = _bpf(BPF_PROG_GET_FD_BY_ID, _IdAttr(id=pid))
        except BpfError:
            continue  # unloaded meanwhile
        try:
            ids = (ctypes.c_uint32 * 64)()
            # nr_map_ids (offset 52) and map_ids (56) ask the kernel for the map ids.
            prep = bytearray(64)
            struct.pack_into("<IQ", prep, 52, 64, ctypes.addressof(ids))
            info = _info(fd, _PROG_INFO_SIZE, bytes(prep))
        except BpfError:
            continue
        finally:
            os.close(fd)
        prog_name = info[64:80].split(b"\0", 1)[0].decode(errors="replace")
        nr = min(struct.unpack_from("<I", info, 52)[0], 64)
        if prog_name == name[:15] and want in ids[:nr]:
            return struct.unpack_from("<QQ", info, 192)
    return None


def enable_stats() -> bool:
    """Turn bpf_stats on; returns whether it was on before (to restore it)."""
    with open(_STATS_SYSCTL) as f:
        before = f.read().strip() == "1"
    with open(_STATS_SYSCTL, "w") as f:
        f.write("1")
    return before


def restore_stats(was_on: bool) -> None:
    if not was_on:
        with suppress(OSError), open(_STATS_SYSCTL, "w") as f:
            f.write("0")
