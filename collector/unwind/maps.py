"""The BPF side's view of processes: which table each executable mapping of a tgid uses.

``UnwindMaps`` owns the three maps of bpf/unwind.h. Rows and mappings are BPF_F_MMAPABLE
arrays written through mmap (no syscall per row: libc's 28k rows are one slice assignment);
``unwind_procs`` (tgid -> slot, count) is a hash written last, so the walker sees a process
only once its mappings are complete, and deleted first when it goes.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable
from dataclasses import dataclass

from collector.bpf import Map
from collector.elf import ElfError, ElfReader
from collector.proc.pinned import PinError, map_files_path, open_regular, stat_regular
from collector.proc.procfs import MapLine, read_maps
from collector.unwind import layout as L
from collector.unwind.store import TableStore
from collector.unwind.table import binary_key, build_table

MAX_VDSO = 1 << 20


@dataclass(frozen=True, slots=True)
class Entry:
    start: int
    end: int
    bias: int
    row_first: int
    row_count: int
    path: str
    key: str  # table key, "" when the mapping has no table (frame pointers)


def _mmap(m: Map) -> mmap.mmap:
    size = m.max_entries * m.value_size
    size = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
    return mmap.mmap(m.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)


class UnwindMaps:
    def __init__(self, rows: Map, mappings: Map, procs: Map, stats: Map | None = None) -> None:
        if rows.value_size != L.ROW.size or mappings.value_size != L.MAPPING.size:
            raise ValueError("unwind maps do not match collector/unwind/layout.py")
        self._rows_mm = _mmap(rows)
        self._map_mm = _mmap(mappings)
        self._procs = procs
        self._stats = stats
        self.store = TableStore(memoryview(self._rows_mm), rows.max_entries)
        self._free_slots = list(range(mappings.max_entries // L.MAX_MAPPINGS - 1, -1, -1))
        self._slots: dict[int, tuple[int, list[Entry]]] = {}  # tgid -> (slot, entries)
        self.counters = {"processes_loaded": 0, "process_slots_full": 0, "mappings_overflow": 0}
        self.counters["open_failed"] = 0

    def add_process(self, pid: int, lines: Iterable[MapLine] | None = None) -> list[Entry] | None:
        """Load the executable mappings of ``pid`` (from /proc/<pid>/maps unless given);
        None when the process is gone or no slot is free (counted). Replaces an older entry."""
        if lines is None:
            lines = read_maps(pid)
            if lines is None:
                return None
        self.remove_process(pid)
        if not self._free_slots:
            self.counters["process_slots_full"] += 1
            return None
        entries = sorted(
            (e for e in (self._entry(pid, ln) for ln in lines if "x" in ln.perms) if e),
            key=lambda e: e.start,
        )
        if len(entries) > L.MAX_MAPPINGS:
            self.counters["mappings_overflow"] += len(entries) - L.MAX_MAPPINGS
            for e in entries[L.MAX_MAPPINGS :]:
                if e.key:
                    self.store.release(e.key)
            entries = entries[: L.MAX_MAPPINGS]
        slot = self._free_slots.pop()
        base = slot * L.MAX_MAPPINGS * L.MAPPING.size
        blob = b"".join(
            L.MAPPING.pack(e.start, e.end, e.bias & (1 << 64) - 1, e.row_first, e.row_count)
            for e in entries
        )
        self._map_mm[base : base + len(blob)] = blob
        self._procs.update(L.PROC.pack(pid, 0)[:4], L.PROC.pack(slot, len(entries)))
        self._slots[pid] = (slot, entries)
        self.counters["processes_loaded"] += 1
        return entries

    def remove_process(self, pid: int) -> None:
        got = self._slots.pop(pid, None)
        if got is None:
            return
        slot, entries = got
        self._procs.delete(L.PROC.pack(pid, 0)[:4])
        for e in entries:
            if e.key:
                self.store.release(e.key)
        self._free_slots.append(slot)

    def entries(self, pid: int) -> list[Entry]:
        got = self._slots.get(pid)
        return list(got[1]) if got else []

    def _entry(self, pid: int, ln: MapLine) -> Entry | None:
        if ln.path == "[vdso]":
            return self._vdso_entry(pid, ln)
        if not ln.path.startswith("/"):
            return Entry(ln.start, ln.end, 0, 0, 0, ln.path, "")  # anonymous/JIT: rbp
        # The kernel's reference to the mapped inode, never the path string (see collector.proc).
        ref = map_files_path(pid, ln.start, ln.end)
        try:
            fd, _st = open_regular(ref, stat_regular(ref))
        except PinError:
            self.counters["open_failed"] += 1
            return Entry(ln.start, ln.end, 0, 0, 0, ln.path, "")
        try:
            return self._file_entry(fd, ln, ln.offset)
        finally:
            os.close(fd)

    def _file_entry(self, fd: int, ln: MapLine, offset: int) -> Entry:
        none = Entry(ln.start, ln.end, 0, 0, 0, ln.path, "")
        try:
            elf = ElfReader(fd)
            vaddr = elf.file_offset_to_vaddr(offset)
        except (ElfError, OSError, ValueError):
            return none
        if vaddr is None or not elf.loads:
            return none
        # Breakpad addresses are relative to the image's load address (the first PT_LOAD's
        # page): 0 for PIE and shared objects, 0x400000 for a classic -no-pie executable.
        image_base = min(s.vaddr for s in elf.loads) & ~(mmap.PAGESIZE - 1)
        key = binary_key(fd)
        loaded = self.store.acquire(key, lambda: build_table(fd, ln.path))
        if loaded is None:
            return none
        # address - bias = (vaddr - image base) - table base, the row pc.
        bias = ln.start - (vaddr - image_base) + loaded.base
        return Entry(ln.start, ln.end, bias, loaded.first, loaded.count, ln.path, key)

    def _vdso_entry(self, pid: int, ln: MapLine) -> Entry | None:
        """The vDSO is an ELF image with .eh_frame that only exists in memory: copy it into a
        memfd once per distinct image and treat it as a file."""
        size = ln.end - ln.start
        if size > MAX_VDSO:
            return Entry(ln.start, ln.end, 0, 0, 0, ln.path, "")
        try:
            with open(f"/proc/{pid}/mem", "rb", buffering=0) as f:
                f.seek(ln.start)
                data = f.read(size)
        except OSError:
            return Entry(ln.start, ln.end, 0, 0, 0, ln.path, "")
        fd = os.memfd_create("vdso", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            return self._file_entry(fd, ln, 0)
        finally:
            os.close(fd)

    def stats(self) -> dict[str, float]:
        """User-space counters: processes, slots, and the table store's."""
        return {
            **self.counters,
            **self.store.stats(),
            "processes_active": len(self._slots),
            "process_slots_free": len(self._free_slots),
        }

    def read_stats(self) -> dict[str, int]:
        """Walk end reasons summed over CPUs (from unwind_stats)."""
        if self._stats is None:
            return {}
        out = {}
        for i, name in enumerate(L.REASONS):
            out[name] = self._stats.percpu_u64_sum(i.to_bytes(4, "little"))
        return out

    def close(self) -> None:
        for pid in list(self._slots):
            self.remove_process(pid)
        self.store.close()
        self._rows_mm.close()
        self._map_mm.close()
