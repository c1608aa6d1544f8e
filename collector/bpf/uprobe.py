"""Uprobes attached per process from the collector itself, without bcc or another compile.

A receiver loads its uprobe programs once, unattached (``AttachSpec("program", ...)``), and
attaches them here to a (binary, file offset) for one process at a time through the uprobe
PMU: ``perf_event_open(type=uprobe, config1=path, config2=offset, pid)`` then
``PERF_EVENT_IOC_SET_BPF`` and ``PERF_EVENT_IOC_ENABLE``. The kernel installs the breakpoint
only in that process's memory (its mm, so every thread, and also mappings it creates later),
and closing the fd removes it: other processes never trap, and a process started after the
collector costs a few syscalls, not a clang run. Nothing is left in ``uprobe_events``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Iterable

from collector.bpf.probe_site import entry_site
from collector.elf.dynamic import SymbolSpan, dynamic_symbols
from collector.elf.reader import SHT_DYNSYM, SHT_SYMTAB, ElfError, ElfReader

SYS_PERF_EVENT_OPEN = 298  # x86-64
PERF_FLAG_FD_CLOEXEC = 8
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408
_PMU = "/sys/bus/event_source/devices/uprobe"
_ATTR_SIZE = 112  # PERF_ATTR_SIZE_VER5
_FUNC_TYPES = (2, 10)  # STT_FUNC, STT_GNU_IFUNC

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class UprobeError(OSError):
    """perf_event_open or an ioctl refused a uprobe; ``errno`` says why."""


def _pmu() -> tuple[int, int]:
    """(perf type of the uprobe PMU, the bit of config that makes a return probe)."""
    try:
        with open(f"{_PMU}/type") as f:
            pmu_type = int(f.read())
        with open(f"{_PMU}/format/retprobe") as f:  # "config:0"
            bit = int(f.read().strip().partition(":")[2])
    except (OSError, ValueError) as exc:
        raise UprobeError(errno.ENOENT, f"no uprobe PMU on this kernel ({exc})") from exc
    return pmu_type, bit


def open_uprobe(prog_fd: int, path: str, offset: int, pid: int, ret: bool = False) -> int:
    """Attach program ``prog_fd`` at ``offset`` of ``path`` in process ``pid``; the perf
    event's fd (closing it detaches)."""
    pmu_type, bit = _pmu()
    path_buf = ctypes.create_string_buffer(os.fsencode(path))
    attr = bytearray(_ATTR_SIZE)
    struct.pack_into("<IIQQ", attr, 0, pmu_type, _ATTR_SIZE, (1 << bit) if ret else 0, 1)
    struct.pack_into("<Q", attr, 40, 1)  # flags: disabled until the program is set
    struct.pack_into("<QQ", attr, 56, ctypes.addressof(path_buf), offset)  # config1, config2
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    fd = _libc.syscall(SYS_PERF_EVENT_OPEN, buf, pid, -1, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise UprobeError(err, f"uprobe {path}+{offset:#x} pid {pid}: {os.strerror(err)}")
    for req, arg in ((PERF_EVENT_IOC_SET_BPF, prog_fd), (PERF_EVENT_IOC_ENABLE, 0)):
        if _libc.ioctl(fd, req, arg) != 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise UprobeError(err, f"uprobe {path}+{offset:#x} ioctl: {os.strerror(err)}")
    return fd


def symbol_offsets(path: str, names: Iterable[str], entry_sites: bool = False) -> dict[str, int]:
    """File offsets of the function symbols ``names`` defined in ``path`` (what a uprobe is
    placed at); names it does not define are absent. Reads ``.symtab`` and ``.dynsym``
    (or ``.dynsym`` through PT_DYNAMIC) within collector.elf's budgets; ElfError if unreadable.
    ``entry_sites``: each offset moved past leading compare-only instructions, where a probe
    is emulated instead of single-stepped (collector.bpf.probe_site)."""
    wanted = {n.encode() for n in names}
    found: dict[str, int] = {}
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        elf = ElfReader(fd)
        spans = [
            _span(elf, sec)
            for sec in elf.section_list
            if sec.type in (SHT_SYMTAB, SHT_DYNSYM) and sec.size
        ]
        if not spans:
            dyn = dynamic_symbols(elf)
            spans = [dyn] if dyn is not None else []
        for span in spans:
            for name, vaddr in _functions(elf, span, wanted - {n.encode() for n in found}):
                offset = elf.vaddr_to_file_offset(vaddr)
                if offset is not None:
                    found.setdefault(name, offset)
        if entry_sites:
            found = {n: entry_site(fd, off) for n, off in found.items()}
    finally:
        os.close(fd)
    return found


def _span(elf: ElfReader, sec: object) -> SymbolSpan:
    link = elf.section_list[sec.link]  # type: ignore[attr-defined]
    ent = 24 if elf.is64 else 16
    return SymbolSpan(sec.name, sec.offset, sec.size // ent, ent, link.offset, link.size)  # type: ignore[attr-defined]


def _functions(elf: ElfReader, span: SymbolSpan, wanted: set[bytes]) -> list[tuple[str, int]]:
    if not wanted or span.entsize not in (16, 24):
        return []
    strtab = elf.read(span.stroffset, span.strsize, f"{span.source} string table")
    data = elf.read(span.offset, span.count * span.entsize, span.source)
    fmt = elf.endian + ("IBBHQQ" if elf.is64 else "IIIBBH")
    out = []
    for fields in struct.iter_unpack(fmt, data):
        if elf.is64:
            name_off, info, _other, shndx, value, _size = fields
        else:
            name_off, value, _size, info, _other, shndx = fields
        if (info & 0xF) not in _FUNC_TYPES or not shndx or not value:
            continue
        end = strtab.find(b"\0", name_off)
        name = strtab[name_off : end if end >= 0 else None]
        if name in wanted:
            out.append((name.decode(), value))
    return out


__all__ = ["ElfError", "UprobeError", "open_uprobe", "symbol_offsets"]
