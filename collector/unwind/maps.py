"""The BPF side's view of processes: which table each executable mapping of a tgid uses.

``UnwindMaps`` owns the three maps of bpf/unwind.h. Rows and mappings are BPF_F_MMAPABLE
arrays written through mmap (no syscall per row: libc's 28k rows are one slice assignment);
``unwind_procs`` (tgid -> slot, count) is a hash written last, so the walker sees a process
only once its mappings are complete, and deleted first when it goes.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from collector.bpf import Map
from collector.elf import ElfError, ElfReader
from collector.proc.pinned import PinError, map_files_path, open_regular, stat_regular
from collector.proc.procfs import MapLine, read_maps
from collector.proc.snapshot import MappedRange
from collector.unwind import layout as L
from collector.unwind.cache import TableCache
from collector.unwind.shared_mem import SharedMapping
from collector.unwind.store import TableStore
from collector.unwind.table import TableError, UnwindTable, binary_key, build_table
from collector.unwind.walk import StackCopy, walk

MAX_VDSO = 1 << 20
MIN_IDLE_S = 10.0  # an idle table is evicted only after this long (see TableStore)
MAX_BINARIES = 8192  # files whose ELF facts are remembered (by dev, inode, size, mtime)


@dataclass(frozen=True, slots=True)
class _Binary:
    """What a process's mapping of a file needs of it, read once per file."""

    key: str  # table key (collector.unwind.table.binary_key)
    image_base: int  # the first PT_LOAD's page: Breakpad pcs are relative to it
    loads: tuple[tuple[int, int, int], ...]  # (file offset, file size, vaddr) per PT_LOAD

    def vaddr(self, offset: int) -> int | None:
        for off, size, vaddr in self.loads:
            if off <= offset < off + max(size, 1):
                return offset - off + vaddr
        return None


def _read_binary(fd: int) -> _Binary | None:
    """None: not an ELF file with loadable segments (no table, frame pointers)."""
    try:
        elf = ElfReader(fd)
        loads = tuple((s.offset, s.filesz, s.vaddr) for s in elf.loads)
        build_id = elf.build_id()
    except (ElfError, OSError, ValueError):
        return None
    if not loads:
        return None
    # Breakpad addresses are relative to the image's load address (the first PT_LOAD's
    # page): 0 for PIE and shared objects, 0x400000 for a classic -no-pie executable.
    image_base = min(v for _, _, v in loads) & ~(mmap.PAGESIZE - 1)
    return _Binary(binary_key(fd, build_id), image_base, loads)


_UNSEEN = object()


class Entry(NamedTuple):
    """One executable mapping as the walker reads it. A tuple: one per mapping of every
    process loaded (a frozen dataclass cost 4x the time to build)."""

    start: int
    end: int
    bias: int
    row_first: int
    row_count: int
    path: str
    key: str  # table key, "" when the mapping has no table (frame pointers)


def _tgid(pid: int) -> bytes:
    return pid.to_bytes(4, "little")


def _start(e: Entry) -> int:
    return e.start


def _mmap(m: Map) -> SharedMapping:
    return SharedMapping(m.fd, m.max_entries * m.value_size)


class UnwindMaps:
    def __init__(
        self,
        rows: Map,
        mappings: Map,
        procs: Map,
        stats: Map | None = None,
        cache: TableCache | None = None,
        gate: Callable[[], None] | None = None,
        verified: Callable[[int, int], tuple[int, int, int, int] | None] | None = None,
    ) -> None:
        if (
            rows.value_size != L.ROW.size
            or mappings.value_size != L.MAPPING.size
            or procs.value_size != L.PROC.size
        ):
            raise ValueError("unwind maps do not match collector/unwind/layout.py")
        self._rows_mm = _mmap(rows)
        self._map_mm = _mmap(mappings)
        self._procs = procs
        self._procs_reader = procs.twin()  # unlink(), called on the reader thread
        self._stats = stats
        self._cache = cache  # built tables on disk (None: build every table at every start)
        self._gate = gate  # called before each table is built (a CPU budget's wait)
        # (maps dev, inode) -> the identity of a file stat-ed a moment ago (ProcessTable.
        # verified_identity): a known file then costs no stat at all
        self._verified = verified
        self._binaries: OrderedDict[tuple[object, ...], _Binary | None] = OrderedDict()
        self.store = TableStore(self._rows_mm.view, rows.max_entries, min_idle_s=MIN_IDLE_S)
        self._free_slots = list(range(mappings.max_entries // L.MAX_MAPPINGS - 1, -1, -1))
        self._slots: dict[int, tuple[int, list[Entry]]] = {}  # tgid -> (slot, entries)
        # tgid -> its executable mappings as loaded: a reload that finds the same does nothing
        self._code: dict[int, frozenset[tuple[int, int, int, str]]] = {}
        self.counters = {"processes_loaded": 0, "process_slots_full": 0, "mappings_overflow": 0}
        # The vDSO image read last and its identity: the next process's is compared, not hashed.
        self._last_vdso: tuple[bytes, tuple[str, bytes]] | None = None
        self.counters["open_failed"] = 0
        self.counters["reloads"] = self.counters["reloads_unchanged"] = 0

    def add_process(self, pid: int, lines: Iterable[MapLine] | None = None) -> list[Entry] | None:
        """Load the executable mappings of ``pid`` (from /proc/<pid>/maps unless given);
        None when the process is gone or no slot is free (counted).

        A process already loaded is reloaded (a library mapped since, e.g. by dlopen or by
        ld.so after the first sample): its old entry stays in force while the new tables are
        built, then the tgid is pointed at the new slot in one map update, so a reload never
        leaves it on frame pointers meanwhile. The same executable mappings as loaded cost a
        read of the maps file alone (``reloads_unchanged``)."""
        if lines is None:
            lines = read_maps(pid)
            if lines is None:
                return None
        code = [ln for ln in lines if "x" in ln.perms]
        sig = frozenset((ln.start, ln.end, ln.offset, ln.path) for ln in code)
        old = self._slots.get(pid)
        reload = old is not None
        if old is not None:
            self.counters["reloads"] += 1
            if self._code.get(pid) == sig:
                self.counters["reloads_unchanged"] += 1
                # Re-armed: the next walk that leaves every mapping wakes the reader again.
                self._procs.update(_tgid(pid), L.PROC.pack(old[0], len(old[1]), 0, 0))
                return list(old[1])
        elif not self._free_slots:
            self.counters["process_slots_full"] += 1
            return None
        entries = sorted((e for e in (self._entry(pid, ln) for ln in code) if e), key=_start)
        if len(entries) > L.MAX_MAPPINGS:
            self.counters["mappings_overflow"] += len(entries) - L.MAX_MAPPINGS
            for e in entries[L.MAX_MAPPINGS :]:
                if e.key:
                    self.store.release(e.key)
            entries = entries[: L.MAX_MAPPINGS]
        if not self._free_slots:  # a reload with no spare slot: replaced in place
            self.remove_process(pid)
            old = None
        slot = self._free_slots.pop()
        base = slot * L.MAX_MAPPINGS * L.MAPPING.size
        blob = b"".join(
            L.MAPPING.pack(e.start, e.end, e.bias & (1 << 64) - 1, e.row_first, e.row_count)
            for e in entries
        )
        self._map_mm.view[base : base + len(blob)] = blob
        self._procs.update(_tgid(pid), L.PROC.pack(slot, len(entries), 0, 0))
        self._slots[pid] = (slot, entries)
        self._code[pid] = sig
        if old is not None:  # the walker now reads the new slot: the old one can go
            self._release(old)
        if not reload:
            self.counters["processes_loaded"] += 1
        return entries

    def remove_process(self, pid: int) -> None:
        got = self._slots.pop(pid, None)
        self._code.pop(pid, None)
        if got is None:
            return
        self._procs.delete(_tgid(pid))
        self._release(got)

    def unlink(self, pid: int) -> None:
        """The reader thread, at an exec: the walker stops using the old image's mappings at
        once (it walks with frame pointers, ``no_process``, until the new image is loaded).
        The worker's ``remove_process`` frees the slot later; until then it stays allocated."""
        self._procs_reader.delete(_tgid(pid))

    def _release(self, got: tuple[int, list[Entry]]) -> None:
        slot, entries = got
        for e in entries:
            if e.key:
                self.store.release(e.key)
        self._free_slots.append(slot)

    def loaded(self, pid: int) -> bool:
        return pid in self._slots

    def entries(self, pid: int) -> list[Entry]:
        got = self._slots.get(pid)
        return list(got[1]) if got else []

    def walk_copies(
        self, pid: int, copies: list[StackCopy], ranges: Sequence[MappedRange] = ()
    ) -> list[tuple[list[int], int]] | None:
        """Worker thread: walk stack copies of ``pid`` (collector.unwind.walk) with its loaded
        entries, or, when it is not loaded (it exited first), with entries built from
        ``ranges``, its snapshot's mappings (its binaries pinned there); None: neither."""
        got = self._slots.get(pid)
        if got is not None:
            return [walk(c, got[1], self._rows_mm.view) for c in copies]
        if not ranges:
            return None
        entries = sorted((self._range_entry(r) for r in ranges), key=_start)
        try:
            return [walk(c, entries, self._rows_mm.view) for c in copies]
        finally:
            for e in entries:
                if e.key:
                    self.store.release(e.key)

    def _range_entry(self, r: MappedRange) -> Entry:
        """An Entry for a snapshot's mapping, its table acquired (released by the caller)."""
        none = Entry(r.start, r.end, 0, 0, 0, r.path, "")
        pinned = r.file
        if pinned is None:
            return none  # anonymous, [vdso]: frame pointers
        info = self._binaries.get(pinned.identity, _UNSEEN)
        if info is _UNSEEN:
            info = self._learn(pinned.identity, pinned.dup)
            if info is _UNSEEN:
                return none
        else:
            self._binaries.move_to_end(pinned.identity)
        if not isinstance(info, _Binary):
            return none
        key = info.key

        def build() -> UnwindTable:
            try:
                fd = pinned.dup()
            except OSError as exc:
                raise TableError(f"{r.path}: {exc}") from exc
            try:
                return self._build(fd, r.path, key)
            finally:
                os.close(fd)

        return self._place_entry(r, r.offset, info, build)

    def _entry(self, pid: int, ln: MapLine) -> Entry | None:
        if ln.path == "[vdso]":
            return self._vdso_entry(pid, ln)
        none = Entry(ln.start, ln.end, 0, 0, 0, ln.path, "")
        if not ln.path.startswith("/"):
            return none  # anonymous/JIT: rbp
        # The kernel's reference to the mapped inode, never the path string (see collector.proc).
        ref = map_files_path(pid, ln.start, ln.end)
        # A file seen before (libc, ld.so: every process) costs a stat at most: its ELF facts
        # are remembered by identity, which the process table gives without one when it
        # stat-ed the file a moment ago; it is opened again only to build a table.
        ident = self._verified(ln.dev, ln.inode) if self._verified is not None else None
        info = _UNSEEN if ident is None else self._binaries.get(ident, _UNSEEN)
        st: os.stat_result | None = None
        if info is _UNSEEN:
            try:
                st = stat_regular(ref)
            except PinError:
                self.counters["open_failed"] += 1
                return none
            ident = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            info = self._binaries.get(ident, _UNSEEN)
        if info is _UNSEEN:
            assert st is not None and ident is not None
            opened = st
            info = self._learn(ident, lambda: open_regular(ref, opened)[0])
            if info is _UNSEEN:
                return none
        else:
            self._binaries.move_to_end(ident)
        if info is None:
            return none

        def build() -> UnwindTable:
            try:
                fd, _st = open_regular(ref, st if st is not None else stat_regular(ref))
            except PinError as exc:
                raise TableError(f"{ln.path}: {exc}") from exc
            try:
                return self._build(fd, ln.path, info.key)
            finally:
                os.close(fd)

        return self._place_entry(ln, ln.offset, info, build)

    def _learn(self, ident: tuple[object, ...], open_fd: Callable[[], int]) -> object:
        """Read and remember a binary's ELF facts (None: not one with loads); _UNSEEN when
        it cannot be opened (counted)."""
        try:
            fd = open_fd()
        except (PinError, OSError):
            self.counters["open_failed"] += 1
            return _UNSEEN
        try:
            info = _read_binary(fd)
        finally:
            os.close(fd)
        self._remember(ident, info)
        return info

    def _remember(self, ident: tuple[object, ...], info: _Binary | None) -> None:
        self._binaries[ident] = info
        while len(self._binaries) > MAX_BINARIES:
            self._binaries.popitem(last=False)

    def _place_entry(
        self,
        ln: MapLine | MappedRange,
        offset: int,
        info: _Binary,
        build: Callable[[], UnwindTable],
    ) -> Entry:
        none = Entry(ln.start, ln.end, 0, 0, 0, ln.path, "")
        vaddr = info.vaddr(offset)
        if vaddr is None:
            return none
        loaded = self.store.acquire(info.key, build)
        if loaded is None:
            return none
        # address - bias = (vaddr - image base) - table base, the row pc.
        bias = ln.start - (vaddr - info.image_base) + loaded.base
        return Entry(ln.start, ln.end, bias, loaded.first, loaded.count, ln.path, info.key)

    def _build(self, fd: int, path: str, key: str) -> UnwindTable:
        """From the on-disk cache when it holds a valid copy, else built (and cached)."""
        if self._cache is not None:
            got = self._cache.load(key)
            if got is not None:
                return got
        if self._gate is not None:
            self._gate()  # the caller's CPU budget: may wait here before a build
        table = build_table(fd, path)
        if self._cache is not None:
            self._cache.save(table)
        return table

    def _vdso_entry(self, pid: int, ln: MapLine) -> Entry | None:
        """The vDSO is an ELF image with .eh_frame that only exists in memory: its bytes are
        read from the process (one page or two) and, once per distinct image, put in a memfd
        and treated as a file."""
        none = Entry(ln.start, ln.end, 0, 0, 0, ln.path, "")
        size = ln.end - ln.start
        if size > MAX_VDSO:
            return none
        try:  # os.open and pread: a Python file object adds an fstat, an ioctl and a seek
            fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            try:
                data = os.pread(fd, size, ln.start)
            finally:
                os.close(fd)
        except OSError:
            return none
        last = self._last_vdso
        if last is not None and last[0] == data:  # a memcmp: every 64-bit process maps one image
            ident = last[1]
        else:
            ident = ("vdso", hashlib.blake2b(data, digest_size=16).digest())
            self._last_vdso = (data, ident)

        def memfd() -> int:
            fd = os.memfd_create("vdso", os.MFD_CLOEXEC)
            os.write(fd, data)
            return fd

        info = self._binaries.get(ident, _UNSEEN)
        if info is _UNSEEN:
            fd = memfd()
            try:
                info = _read_binary(fd)
            finally:
                os.close(fd)
            self._remember(ident, info)
        if info is None:
            return none

        def build() -> UnwindTable:
            fd = memfd()
            try:
                return self._build(fd, ln.path, info.key)
            finally:
                os.close(fd)

        return self._place_entry(ln, 0, info, build)

    def stats(self) -> dict[str, float]:
        """User-space counters: processes, slots, and the table store's."""
        return {
            **self.counters,
            **self.store.stats(),
            **(self._cache.stats() if self._cache is not None else {}),
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
