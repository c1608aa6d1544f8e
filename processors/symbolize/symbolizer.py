"""Addresses -> interned frames. Synchronous; the processor runs it in a worker thread.

Steady state per sample: one snapshot lookup, one dict get for the process's cache, one dict
get for the (user, kernel) address tuples, and the Sample object. New stacks resolve each
frame through interned Locations and per-binary caches.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable

from collector.elf import SymbolTable
from collector.model import (
    FRAME_GO,
    FRAME_KERNEL,
    FRAME_NATIVE,
    MISSING_KERNEL_STACK,
    MISSING_USER_STACK,
    Function,
    Line,
    Location,
    Mapping,
    ProcessInfo,
    RawBatch,
    Sample,
    Stack,
    SymbolizedBatch,
)
from collector.proc import MappedRange, ProcessTable, Snapshot
from collector.telemetry import Counters
from processors.symbolize.binaries import BinaryCache
from processors.symbolize.binary import Binary
from processors.symbolize.config import SymbolizeConfig
from processors.symbolize.kernel import load_kallsyms
from processors.symbolize.markers import (
    LONE_LEAF,
    MISSING_KERNEL,
    MISSING_USER,
    STOP_MARKERS,
    TRUNCATED,
    TRUNCATION_COUNTERS,
    is_lone_leaf,
)
from processors.symbolize.symcache_store import SymCacheStore, default_dir

KERNEL_MAPPING_NAME = "[kernel.kallsyms]"
_RETRY_OBSERVE_S = 1.0


class _Proc:
    __slots__ = ("info", "snap", "stacks")

    def __init__(self, info: ProcessInfo, snap: Snapshot | None) -> None:
        self.info = info
        self.snap = snap
        self.stacks: dict[tuple[tuple[int, ...], tuple[int, ...]], Stack] = {}


class Symbolizer:
    def __init__(
        self,
        table: ProcessTable,
        config: SymbolizeConfig,
        counters: Counters,
        component_id: str = "symbolize",
        logger: logging.Logger | None = None,
        kernel_loader: Callable[[], SymbolTable | None] = load_kallsyms,
    ) -> None:
        # kernel_loader: symbolizers with different settings share one kallsyms table.
        self._kernel_loader = kernel_loader
        self.table = table
        self.config = config
        self.counters = counters
        self.component_id = component_id
        self.log = logger or logging.getLogger(__name__)
        self._procs: OrderedDict[tuple[int, int, int], _Proc] = OrderedDict()
        self._functions: dict[tuple[str, str, str, int], Function] = {}
        self._mappings: dict[tuple[int, int, int, str, str], Mapping] = {}
        self._locations: dict[tuple[int, int, int], Location] = {}  # see _intern
        self._kernel_locs: dict[int, Location] = {}
        self._kernel: SymbolTable | None = None
        self._kernel_mapping: Mapping | None = None
        self._kernel_loaded = False
        self._tried: dict[int, float] = {}  # pid -> when observe last failed
        counters.gauge(component_id, "binary_memory_bytes", self.binary_memory)
        self._stack_failure_logged = False
        self._provisional = False  # the stack being built must not be cached (_new_stack)
        # Counts made per frame or per sample, added to the counters once per batch: each
        # add takes the counters' lock, and per frame that was 12 % of a new stack's cost.
        self._tally: dict[str, int] = {}
        self._store: SymCacheStore | None = None
        if config.dwarf_lines and config.symcache_max_bytes:
            directory = config.symcache_dir or default_dir()
            self._store = SymCacheStore(
                directory, config.symcache_max_bytes, self.log, lambda n: self._count_n(n, 1)
            )
        self._binaries = BinaryCache(config, self._functions, self._count_n, self.log, self._store)

    # ---- public ------------------------------------------------------------------------
    def symbolize(self, batch: RawBatch) -> SymbolizedBatch:
        try:
            return self._symbolize(batch)
        finally:
            self._flush_tally()

    def _flush_tally(self) -> None:
        tally = self._tally
        hits = self._binaries.take_hits()
        if hits:
            tally["binary_cache_hits"] = tally.get("binary_cache_hits", 0) + hits
        for name, n in tally.items():
            self.counters.add(self.component_id, name, n)
        tally.clear()

    def _symbolize(self, batch: RawBatch) -> SymbolizedBatch:
        tally = self._tally
        out: list[Sample] = []
        lookup = self.table.lookup
        procs = self._procs
        misses = 0  # stacks not in their process's cache (counted once per batch)
        # This batch's snapshots by identity (a dict get on an int, where Snapshot.key builds
        # and hashes a tuple); an entry counts only while its process still holds that very
        # snapshot, so neither a refresh nor a reused id can hand out the wrong process.
        by_snap: dict[int, _Proc] = {}
        for s in batch.samples:
            snap = lookup(s.pid, s.time_ns)
            if snap is None:
                snap = self._observe_late(s.pid, s.time_ns)
            proc = by_snap.get(id(snap)) if snap is not None else None
            if proc is None or proc.snap is not snap:
                key = snap.key if snap is not None else (s.pid, -1, 0)
                proc = procs.get(key)
                if proc is None or (snap is not None and proc.snap is not snap and snap.refreshed):
                    proc = self._proc(key, snap, s.comm, proc)
                if snap is not None and proc.snap is snap:
                    by_snap[id(snap)] = proc
            skey = (s.user_stack, s.kernel_stack)
            stack = proc.stacks.get(skey)
            if stack is None:
                misses += 1
                try:
                    stack = self._new_stack(proc, s.user_stack, s.kernel_stack, s.time_ns)
                except Exception:  # a bug on hostile input costs this stack its names only
                    stack = self._unnamed_stack(proc, s.user_stack, s.kernel_stack)
            frames = stack.frames
            why = TRUNCATION_COUNTERS.get(id(frames[-1])) if frames else None
            if why is not None:
                # Per sample: the cached stack is reused by every later sample of it.
                tally["stack_truncated"] = tally.get("stack_truncated", 0) + 1
                tally[why] = tally.get(why, 0) + 1
            # positional: keywords cost a dict per call (span_name and thread_name stay "")
            out.append(
                Sample(
                    stack,
                    proc.info,
                    s.tid,
                    s.cpu,
                    s.comm,
                    s.time_ns,
                    s.value,
                    s.trace_id,
                    s.span_id,
                    "",
                    "",
                    s.more,
                )
            )
        if out:
            self.counters.add(self.component_id, "stack_cache_hits", len(out) - misses)
            self.counters.add(self.component_id, "stack_cache_misses", misses)
        if misses:  # only new stacks load binaries or grow their lazy parts
            self._binaries.fit_memory(None)
        return SymbolizedBatch(
            batch.profile_type, out, batch.receiver_id, dict(batch.counters), batch.window_end
        )

    def close(self) -> None:
        self._binaries.close()
        self._procs.clear()
        self.counters.drop_gauge(self.component_id, "binary_memory_bytes", self.binary_memory)

    def binary_memory(self) -> int:
        """Bytes the loaded binaries retained when last checked (after a load or a batch)."""
        return self._binaries.held()

    def load_kernel(self) -> SymbolTable | None:
        if not self._kernel_loaded:
            self._kernel_loaded = True
            t0 = time.perf_counter()
            self._kernel = self._kernel_loader()
            if self._kernel is None:
                self.log.warning(
                    "kernel symbols unavailable: /proc/kallsyms hides addresses "
                    "(run as root or set kernel.kptr_restrict=0); kernel frames stay addresses"
                )
            else:
                starts = self._kernel.starts
                self._kernel_mapping = Mapping(starts[0], starts[-1] + 1, 0, KERNEL_MAPPING_NAME)
                self.log.info(
                    "kernel symbols loaded symbols=%d bytes=%d seconds=%.2f",
                    len(self._kernel),
                    self._kernel.nbytes(),
                    time.perf_counter() - t0,
                )
        return self._kernel

    # ---- processes ---------------------------------------------------------------------
    def _observe_late(self, pid: int, time_ns: int) -> Snapshot | None:
        """The receiver never saw this pid (or it was evicted): snapshot it now if alive."""
        if pid <= 0:
            return None
        now = time.monotonic()
        if now - self._tried.get(pid, -1e9) < _RETRY_OBSERVE_S:
            return None
        snap = self.table.observe(pid)
        if snap is None:
            if len(self._tried) > 65536:
                self._tried.clear()
            self._tried[pid] = now
            return None
        return self.table.lookup(pid, time_ns)

    def _proc(
        self, key: tuple[int, int, int], snap: Snapshot | None, comm: str, old: _Proc | None
    ) -> _Proc:
        if old is not None:  # the snapshot was refreshed: same process, keep its stacks
            old.snap = snap
            return old
        if snap is None:
            info = ProcessInfo(pid=key[0], executable_name=comm)
        else:
            build_id = ""
            if snap.exe_file is not None:
                b = self._binaries.get(snap.exe_file)
                build_id = b.build_id if b is not None else ""
            info = ProcessInfo(
                pid=snap.pid,
                executable_name=os.path.basename(snap.exe_path) or snap.comm,
                executable_path=snap.exe_path,
                build_id=build_id,
                container_id=snap.container_id,
                start_time=snap.start_time,
                pid_namespaced=snap.pid_namespaced,
            )
        proc = _Proc(info, snap)
        self._procs[key] = proc
        while len(self._procs) > self.config.max_processes:
            self._procs.popitem(last=False)
        return proc

    # ---- stacks ------------------------------------------------------------------------
    def _new_stack(
        self, proc: _Proc, user: tuple[int, ...], kernel: tuple[int, ...], time_ns: int = 0
    ) -> Stack:
        frames: list[Location] = []
        self._provisional = False
        if self.config.kernel and kernel:
            for i, addr in enumerate(kernel):
                frames.append(self._kernel_frame(addr, i > 0))
        if user:
            if proc.snap is None and user[0] != MISSING_USER_STACK:
                self.counters.add(self.component_id, "process_unknown")
            for i, addr in enumerate(user):
                stop = STOP_MARKERS.get(addr) if addr < 0 else None
                if stop is not None:  # the table unwinder says where and why it stopped
                    frames.append(stop)
                    break
                loc = self._user_frame(proc, addr, i > 0, time_ns)
                if (
                    i > 0
                    and loc.mapping is None
                    and proc.snap is not None
                    and loc is not MISSING_USER
                ):
                    frames.append(TRUNCATED)
                    break
                frames.append(loc)
            if len(user) == 1 and frames and proc.snap is not None and is_lone_leaf(frames[-1]):
                frames.append(LONE_LEAF)
        stack = Stack(tuple(frames))
        if self._provisional:
            # An address the maps lacked although the process may have mapped it after they
            # were read (a refresh was due but held back): built again for the next sample,
            # not cached as cut short for good.
            self.counters.add(self.component_id, "stack_not_cached")
            return stack
        if len(proc.stacks) >= self.config.max_stacks_per_process:
            proc.stacks.clear()
        proc.stacks[(user, kernel)] = stack
        return stack

    def _unnamed_stack(self, proc: _Proc, user: tuple[int, ...], kernel: tuple[int, ...]) -> Stack:
        self.counters.add(self.component_id, "stack_failed")
        if not self._stack_failure_logged:
            self._stack_failure_logged = True
            self.log.exception("symbolizing a stack failed; its frames stay addresses")
        frames = [self._intern(None, a, (), FRAME_KERNEL) for a in kernel if self.config.kernel]
        frames += [self._intern(None, a, ()) for a in user]
        stack = Stack(tuple(frames))
        proc.stacks[(user, kernel)] = stack
        return stack

    def _intern(
        self,
        mapping: Mapping | None,
        addr: int,
        lines: tuple[Line, ...],
        frame_type: str = FRAME_NATIVE,
    ) -> Location:
        # By identity: mapping comes from _mapping and lines from Binary.lines_at, each one
        # object per mapping or file offset while their caches keep it, and the Location
        # kept under the key holds both, so their ids stay theirs. An equal object made
        # again after a cache clear only adds an equal Location (encoders compare by value).
        # Hashing the objects instead ran a Python __hash__ per line of every frame.
        key = (id(mapping), addr, id(lines))
        loc = self._locations.get(key)
        if loc is None:
            if len(self._locations) > 1_000_000:
                self._locations.clear()
            loc = self._locations[key] = Location(mapping, addr, lines, frame_type)
        return loc

    def _kernel_frame(self, addr: int, is_return: bool) -> Location:
        if addr == MISSING_KERNEL_STACK:
            return MISSING_KERNEL
        loc = self._kernel_locs.get(addr)
        if loc is not None:
            return loc
        table = self.load_kernel()
        lines: tuple[Line, ...] = ()
        if table is not None:
            hit = table.lookup(addr - 1 if is_return else addr)
            if hit is not None:
                fn = self._func(hit[0], hit[0])
                lines = (Line(fn),)
        loc = Location(self._kernel_mapping, addr, lines, FRAME_KERNEL)
        if len(self._kernel_locs) >= self.config.max_kernel_locations:
            self._kernel_locs.clear()
        self._kernel_locs[addr] = loc
        return loc

    def _func(self, name: str, system_name: str) -> Function:
        key = (name, system_name, "", 0)
        fn = self._functions.get(key)
        if fn is None:
            fn = self._functions[key] = Function(name, system_name)
        return fn

    def _user_frame(self, proc: _Proc, addr: int, is_return: bool, time_ns: int = 0) -> Location:
        if addr == MISSING_USER_STACK:
            return MISSING_USER
        snap = proc.snap
        if snap is None:
            return self._intern(None, addr, ())
        m = snap.find(addr)
        if m is None and not snap.ended_ns:
            fresh = self.table.refresh(snap, time_ns)
            if fresh is not snap:
                proc.snap = snap = fresh
                m = snap.find(addr)
            elif time_ns > snap.taken_ns:
                self._provisional = True
        if m is None:
            tally = self._tally
            tally["address_unmapped"] = tally.get("address_unmapped", 0) + 1
            return self._intern(None, addr, ())
        binary = self._binaries.get(m.file) if m.file is not None else None
        mapping = self._mapping(m, binary)
        if binary is None:
            return self._intern(mapping, addr, ())
        lookup = addr - 1 if is_return else addr
        lines = binary.lines_at(lookup - m.start + m.offset)
        if not lines:
            tally = self._tally
            tally["symbol_unresolved"] = tally.get("symbol_unresolved", 0) + 1
        return self._intern(mapping, addr, lines, FRAME_GO if binary.is_go else FRAME_NATIVE)

    def _mapping(self, m: MappedRange, binary: Binary | None) -> Mapping:
        name = m.path or "[anon]"
        build_id = binary.build_id if binary is not None else ""
        key = (m.start, m.end, m.offset, name, build_id)
        mp = self._mappings.get(key)
        if mp is None:
            if len(self._mappings) > 200_000:
                self._mappings.clear()
            mp = self._mappings[key] = Mapping(m.start, m.end, m.offset, name, build_id)
        return mp

    def _count_n(self, name: str, n: int) -> None:
        self.counters.add(self.component_id, name, n)
