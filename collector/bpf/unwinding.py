"""User stacks unwound in BPF from tables: the receiver's side of bpf/unwind.h.

A stack receiver whose program was built with UNWIND_TABLES owns one ``TableUnwinding``:
- processes are loaded into the walker's maps (``UnwindMaps.add_process``: ~1 ms with its
  binaries' tables loaded, 0.1-0.3 s per table to build, less when the on-disk cache has it)
  on a worker thread, never on the reader. The reader only notes pids (bounded; what does not
  fit is counted and that process stays on frame pointers until its next exec);
- lazily and cheaply: a process is queued at its first sample, the worker takes the queued
  process with the most samples first, a process that exits while queued costs nothing more
  (``unwind_skipped_exited``), and table builds are held to a budget (``CpuBudget``:
  ``unwind_budget`` of a core on average, waited for before each build), so a start or an
  exec storm on a busy host does not take a core for seconds; reads from the on-disk cache
  and processes whose tables are loaded are not held back (milliseconds). Samples taken
  before a process is loaded are walked with frame pointers and say ``no_process``;
- events carry their user frames after the 64-byte header (decoded by
  collector.bpf.frames), and a walk that stopped before the outermost frame ends with a
  sentinel address naming why (collector.model.raw.UNWIND_STOP_BASE);
- every walk's end reason is counted (``unwind_<reason>`` from the unwind_stats map), with
  the table store's own counters (``unwind_tables_built``, ...).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from collector.bpf.held_copies import HeldCopies
from collector.bpf.loader import LoadedProgram
from collector.bpf.unwind_worker import MAX_RELOAD_PIDS, URGENT, UnwindWorker
from collector.unwind.budget import CpuBudget
from collector.unwind.cache import TableCache
from collector.unwind.maps import UnwindMaps
from collector.unwind.walk import StackCopy

if TYPE_CHECKING:
    from collector.bpf.stack_config import UnwindTableSettings
    from collector.model import RawSample
    from collector.proc.snapshot import MappedRange
    from collector.proc.table import ProcessTable
    from collector.unwind.maps import Entry

QUEUE_SIZE = 4096  # processes waiting for the worker (an exec storm queues many short ones)
PRELOAD_TIMEOUT_S = 5.0  # start() waits at most this long for the configured pids' tables
BURST_S = 0.5  # CPU seconds the worker may spend at once before the budget's rate applies
# A walk that left every known mapping (a library mapped after the process was loaded: dlopen,
# or ld.so still mapping when the first sample came) reloads the process: at once, then at
# intervals doubling from RELOAD_MIN_S to RELOAD_MAX_S while reloads find nothing new (a
# garbage return address must not reload a process at every sample).
RELOAD_MIN_S = 0.02
RELOAD_MAX_S = 10.0
_EXECED = 1 << 30  # and a loaded process that execed ahead of sampled ones (budget applies)
# Counted from the store and the maps (user space), as unwind_<name>; gauges are left out.
_USER_COUNTERS = (
    "processes_loaded",
    "reloads",
    "reloads_unchanged",
    "process_slots_full",
    "mappings_overflow",
    "open_failed",
    "tables_built",
    "tables_from_cache",
    "tables_failed",
    "tables_evicted",
    "tables_no_space",
    "tables_no_space_skipped",
    "cache_hits",
    "cache_misses",
    "cache_rejected",
    "cache_writes",
    "cache_write_failed",
    "cache_evicted",
)


class TableUnwinding(UnwindWorker):
    def __init__(
        self,
        prog: LoadedProgram,
        name: str,
        log: logging.Logger,
        count: Callable[[str, int], None],
        budget: float | None = None,
        cache: TableCache | None = None,
        burst: float = BURST_S,
        verified: Callable[[int, int], tuple[int, int, int, int] | None] | None = None,
        mappings_of: Callable[[int, int], Sequence[MappedRange]] | None = None,
        catch_up: Callable[[int, Sequence[Entry]], bool] | None = None,
    ) -> None:
        self._log = log
        self._mappings_of = mappings_of  # (pid, sample time) -> its snapshot's mappings
        # (pid, the code mappings just loaded) -> whether its snapshot was taken again
        self._catch_up = catch_up
        self._count = count  # the receiver's counter (called on the reader thread only)
        self.maps = UnwindMaps(
            prog.map("unwind_rows"),
            prog.map("unwind_mappings"),
            prog.map("unwind_procs"),
            prog.map("unwind_stats"),
            cache=cache,
            gate=self._gate,
            verified=verified,
        )
        self._budget = CpuBudget(budget, burst) if budget else None
        self._cond = threading.Condition()
        # Guarded by _cond: pid -> samples seen while it waits (insertion order breaks ties),
        # pids handed to the worker (so their exit is passed on), removals to do, the pid
        # being loaded now.
        self._pending: dict[int, int] = {}
        self._known: set[int] = set()
        self._removals: set[int] = set()
        self._fresh: set[int] = set()  # loads queued ahead of the pid's EVENT_F_NEW_PID
        self._busy = 0
        self._stop = False
        self._cpu_s = 0.0  # the worker's CPU time in all
        self._mark = 0.0  # the worker's thread time when the budget was last charged
        self._urgent_job = False  # the job in hand is a preload: no budget wait
        self._worker_counts = {
            "load_failed": 0,
            "worker_failed": 0,
            "queued": 0,
            "exec_queued": 0,
            "reloads_queued": 0,
            "skipped_exited": 0,
            "budget_waits": 0,
            "worker_cpu_ms": 0,
            "budget_wait_ms": 0,
            "fd_waits": 0,
            "snapshots_caught_up": 0,
        }  # written under _cond, read by the reader
        self._held = HeldCopies()  # samples with stack copies (under _cond)
        # Reader thread only: pid -> (monotonic time a reload may next be queued, interval)
        self._reload_at: dict[int, tuple[float, float]] = {}
        self._reload_reset: set[int] = set()  # under _cond: reloads that found new code
        self._kernel_prev: dict[str, int] = {}
        self._user_prev: dict[str, int] = {}
        self._failure_logged = False
        self._wake_due = False  # under _cond: a job was queued since the last wake()
        self._thread = threading.Thread(target=self._work, name=f"{name}-unwind", daemon=True)
        self._thread.start()

    @classmethod
    def for_receiver(
        cls,
        prog: LoadedProgram,
        name: str,
        log: logging.Logger,
        count: Callable[[str, int], None],
        settings: UnwindTableSettings,
        processes: ProcessTable,
    ) -> TableUnwinding:
        """A receiver's unwinding: its budget and cache settings, and the host's process
        table telling the worker which files it stat-ed a moment ago."""
        return cls(
            prog,
            name,
            log,
            count,
            settings.unwind_budget,
            settings.table_cache(),
            verified=processes.verified_identity,
            mappings_of=lambda pid, t: _mappings(processes, pid, t),
            catch_up=lambda pid, entries: _catch_up(processes, pid, entries),
        )

    # -- reader thread -----------------------------------------------------------------

    def wake(self) -> None:
        """After a drain: wake the worker once for the loads and removals the drain queued.
        A notify per event woke it for each new process of an exec storm, and the hand-offs
        of the GIL that followed cost the reader 4 % of the collector's CPU."""
        if self._wake_due:
            with self._cond:
                self._wake_due = False
                self._cond.notify()

    def process_seen(self, pid: int) -> None:
        """The first event of a process or of its new image (EVENT_F_NEW_PID): queue it for
        loading, unless a load of it is queued, or was queued at its exec or preload."""
        with self._cond:
            if pid in self._fresh:  # loaded (or queued) at its exec or preload already
                self._fresh.discard(pid)
                return
            if pid in self._pending:
                return
            if len(self._pending) >= QUEUE_SIZE:
                self._count("unwind_queue_full", 1)
                return
            self._pending[pid] = 1
            self._removals.discard(pid)  # a load replaces what the pid had
            self._worker_counts["queued"] += 1
            self._wake_due = True

    def hold(self, sample: RawSample, copy: StackCopy) -> bool:
        """A sample walked before its process was loaded, with a copy of its stack: kept
        until the worker can walk the copy (its process loaded, or gone: then from its
        snapshot). False when too many bytes are held already: the caller sends it as is."""
        pid = sample.pid
        with self._cond:
            if not self._held.add(sample, copy, time.monotonic()):
                return False
            if pid not in self._pending and pid != self._busy:
                self._held.ready.add(pid)  # loaded already, or never to be: walk it now
                self._wake_due = True
        return True

    @property
    def copies_paused(self) -> bool:
        """The held copies are nearly at their bound (read without the lock: one int)."""
        return self._held.paused

    def take_walked(self, expire: bool = False) -> list[RawSample]:
        """Reader thread, at each drain: the held samples the worker has walked, and those
        held too long (all with ``expire``: shutdown), which go on as they came."""
        with self._cond:
            return self._held.take(time.monotonic(), expire)

    def sampled(self, pid: int) -> None:
        """Another sample of a process: a queued one moves up (no lock when it is not)."""
        if pid in self._pending:
            with self._cond:
                if pid in self._pending:
                    self._pending[pid] += 1

    def mapping_missed(self, pid: int) -> None:
        """A walk of ``pid`` stopped at an address outside its loaded mappings: reload it,
        at once the first time (and the first time since a reload found new code), then at
        intervals doubling from RELOAD_MIN_S to RELOAD_MAX_S, unless a load of it is queued
        already (it reads the maps afresh)."""
        now = time.monotonic()
        got = self._reload_at.get(pid)
        if got is None or pid in self._reload_reset:
            if len(self._reload_at) >= MAX_RELOAD_PIDS:
                self._reload_at.clear()
            interval = RELOAD_MIN_S
            if pid in self._reload_reset:
                with self._cond:
                    self._reload_reset.discard(pid)
        elif now < got[0]:
            return
        else:
            interval = min(2 * got[1], RELOAD_MAX_S)
        self._reload_at[pid] = (now + interval, interval)
        with self._cond:
            if pid in self._pending or pid == self._busy or pid not in self._known:
                return
            self._pending[pid] = 1
            self._worker_counts["reloads_queued"] += 1
            self._wake_due = True

    def process_exec(self, pid: int) -> None:
        """Its old mappings are gone: BPF forgot them in the exec, and they are unlinked again
        here, after a load of the old image the worker may have written since. A process
        that was loaded is reloaded at once, ahead of sampled ones: its new image's first
        waits come before its first event reaches user space. Others load at their first
        event (EVENT_F_NEW_PID), so an exec storm of never-sampled processes costs nothing."""
        self.maps.unlink(pid)
        with self._cond:
            was_loaded = pid in self._known or pid == self._busy
        self._gone(pid)
        if not was_loaded:
            return
        with self._cond:
            if len(self._fresh) >= QUEUE_SIZE:  # exits never heard of (a full ring) left
                self._fresh.clear()  # these: forgetting costs one load again at most
            if len(self._pending) < QUEUE_SIZE:
                self._removals.discard(pid)  # the load replaces the old image's slot
                self._pending[pid] = _EXECED
                self._fresh.add(pid)
                self._worker_counts["exec_queued"] += 1
                self._wake_due = True

    def process_exit(self, pid: int) -> None:
        self._gone(pid)

    def _gone(self, pid: int) -> None:
        self._reload_at.pop(pid, None)
        with self._cond:
            self._fresh.discard(pid)
            if self._pending.pop(pid, None) is not None:
                self._worker_counts["skipped_exited"] += 1
            if pid in self._held and pid != self._busy:
                self._held.ready.add(pid)  # walked from its snapshot, before any removal
            if pid in self._known or pid == self._busy:
                self._removals.add(pid)
                self._wake_due = True

    def preload(self, pids: list[int], timeout: float = PRELOAD_TIMEOUT_S) -> bool:
        """Load ``pids`` now, ahead of sampled processes and regardless of the budget, and
        wait (bounded) until done: with a ``pids`` setting their libraries' tables are built
        before their first sample, not 0.1-0.3 s after it. False when the wait timed out (the
        loads go on in the background)."""
        want = set(pids)
        with self._cond:
            for pid in want:
                self._pending[pid] = URGENT
                self._fresh.add(pid)
                self._worker_counts["queued"] += 1
            self._cond.notify()
            return self._cond.wait_for(
                lambda: not (want & self._pending.keys()) and self._busy not in want, timeout
            )

    def read_counters(self) -> None:
        """Add the growth of the walk reasons and the worker's counters."""
        for name, value in self.maps.read_stats().items():
            self._count(f"unwind_{name}", value - self._kernel_prev.get(name, 0))
            self._kernel_prev[name] = value
        stats = self.maps.stats()
        now = {k: int(stats.get(k, 0)) for k in _USER_COUNTERS}
        with self._cond:
            now.update(self._worker_counts)
            now.update(self._held.counts)
        for name, value in now.items():
            self._count(f"unwind_{name}", value - self._user_prev.get(name, 0))
            self._user_prev[name] = value

    def close(self) -> None:
        """Stop the worker (after the job in hand; queued loads are dropped), then release
        the maps' mmaps."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join()
        self.maps.close()


def _mappings(processes: ProcessTable, pid: int, time_ns: int) -> Sequence[MappedRange]:
    snap = processes.lookup(pid, time_ns)
    return snap.mappings if snap is not None else ()


def _catch_up(processes: ProcessTable, pid: int, entries: Sequence[Entry]) -> bool:
    """The worker read code mappings that the process's snapshot lacks: the snapshot was taken
    at its first sample, while ld.so was still mapping libraries. Taken again now, while the
    process lives, so that samples of a process gone before the symbolizer reads them are
    named past main too (otherwise ``[stack truncated: no frame pointer]``: the caller of main
    in a libc that the snapshot never saw)."""
    snap = processes.lookup(pid)
    if snap is None or snap.ended_ns or all(snap.find(e.start) is not None for e in entries):
        return False
    return processes.refresh(snap, force=True) is not snap
