"""The unwind worker's thread: the half of ``TableUnwinding`` (collector/bpf/unwinding.py) that
loads and removes processes and walks held stack copies, one job at a time, held to the CPU
budget and to the open-file limit. The reader-side half queues the jobs; both share the state
``TableUnwinding.__init__`` sets up, under its condition.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from collector.bpf.syscall import name_thread
from collector.proc.procfs import is_exiting

if TYPE_CHECKING:
    import logging

    from collector.bpf.held_copies import HeldCopies
    from collector.proc.snapshot import MappedRange
    from collector.unwind.budget import CpuBudget
    from collector.unwind.maps import Entry, UnwindMaps

FD_HEADROOM = 24  # descriptors left free for others before the worker opens a binary
MAX_RELOAD_PIDS = 8192  # reloads that found new code, remembered (TableUnwinding's bound too)
URGENT = 1 << 40  # sample count that puts a preloaded pid ahead of every sampled one


def _open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less listdir's own
    except OSError:
        return 0


class _Stopped(Exception):
    """close() was called while a load waited for budget: the load is abandoned."""


class UnwindWorker:
    """The worker thread's methods; the state is TableUnwinding's (declared here for types)."""

    maps: UnwindMaps
    _log: logging.Logger
    _cond: threading.Condition
    _thread: threading.Thread
    _budget: CpuBudget | None
    _held: HeldCopies
    _pending: dict[int, int]
    _known: set[int]
    _removals: set[int]
    _reload_reset: set[int]
    _worker_counts: dict[str, int]
    _mappings_of: Callable[[int, int], Sequence[MappedRange]] | None
    _catch_up: Callable[[int, Sequence[Entry]], bool] | None
    _busy: int
    _stop: bool
    _cpu_s: float
    _mark: float
    _urgent_job: bool
    _failure_logged: bool

    def _next(self) -> tuple[str, int] | None:
        """(kind, pid) of the next job ("add", "remove", "late"), waiting for one (and for
        the budget); None: stop."""
        with self._cond:
            while True:
                if self._stop:
                    return None
                if self._held.ready:  # before removals: a loaded process's copies need it
                    return "late", self._held.ready.pop()
                if self._removals:  # cheap, and frees slots for the loads
                    return "remove", self._removals.pop()
                if self._pending:
                    # The budget is not waited for here but before each build (_gate): a
                    # process whose tables are loaded or cached costs about a millisecond.
                    pid = max(self._pending, key=self._pending.__getitem__)
                    self._urgent_job = self._pending.pop(pid) >= URGENT
                    self._known.add(pid)
                    self._busy = pid
                    return "add", pid
                self._cond.wait()

    def _wait_budget(self, wait: float) -> None:
        """Under _cond: wait up to ``wait`` seconds for the budget to refill."""
        assert self._budget is not None
        self._worker_counts["budget_waits"] += 1
        t0 = time.monotonic()
        self._cond.wait(wait)
        self._budget.note_wait(time.monotonic() - t0)
        self._worker_counts["budget_wait_ms"] = int(self._budget.waited * 1e3)

    def _gate(self) -> None:
        """Worker thread, inside add_process, before each table build (not before a read
        from the cache): charge what the job spent so far, and wait while the budget is
        spent (one process mapping 60 libraries would otherwise build them all in one go:
        seconds of a core)."""
        self._wait_for_descriptors()
        if self._budget is None:
            return
        now = time.thread_time()
        with self._cond:
            self._budget.charge(now - self._mark)
            self._mark = now
            # A preload waiting behind this build lets it through (it is charged all the same).
            while not self._urgent_job and not any(n >= URGENT for n in self._pending.values()):
                if self._stop:
                    raise _Stopped
                wait = self._budget.wait_s()
                if wait <= 0:
                    return
                self._wait_budget(wait)

    def _wait_for_descriptors(self) -> None:
        """A build holds 3-4 descriptors for a moment (the binary, symbolic's own open, its
        temporary file); under a low open-file limit, wait until enough are free, so that
        the symbolizer reopening a parked pin meanwhile does not get EMFILE (at a limit of
        64 with 80 binaries: 2-4 processes left unnamed without this wait)."""
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY or soft > 4096:
            return  # plenty: not worth listing /proc/self/fd
        while _open_fds() > soft - FD_HEADROOM:
            with self._cond:
                if self._stop:
                    raise _Stopped
                self._worker_counts["fd_waits"] += 1
                self._cond.wait(0.05)

    def _work(self) -> None:
        name_thread(self._thread.name)
        # Normal priority on purpose: at nice 19, two busy CPUs starved the builds for
        # seconds (a 3 s python run: 70 % of its samples before its tables, 11 % at nice 0).
        # The budget, not the priority, keeps the builds from taking a core.
        try:
            while (job := self._next()) is not None:
                if not self._job(*job):
                    return
        except Exception:  # outside a job (a bug): logged and counted, never a silent stop
            with self._cond:
                self._worker_counts["worker_failed"] += 1
                self._busy = 0
                self._cond.notify_all()
            self._log.error(
                "unwind: the table worker stopped; processes not loaded yet stay on frame pointers",
                exc_info=True,
            )

    def _job(self, kind: str, pid: int) -> bool:
        """Load or remove ``pid``, or walk its held copies; False when close() stopped it
        midway."""
        cpu0 = self._mark = time.thread_time()
        add = kind == "add"
        try:
            if kind == "late":
                self._walk_held(pid)
            elif add:
                unchanged = self.maps.counters["reloads_unchanged"]
                reload = self.maps.loaded(pid)
                entries = self.maps.add_process(pid)
                if entries and self._catch_up is not None and self._catch_up(pid, entries):
                    with self._cond:
                        self._worker_counts["snapshots_caught_up"] += 1
                if reload and self.maps.counters["reloads_unchanged"] == unchanged:
                    with self._cond:  # new code: the next miss is not backed off
                        if len(self._reload_reset) < MAX_RELOAD_PIDS:
                            self._reload_reset.add(pid)
                self._walk_held(pid)
                if is_exiting(pid):  # sampled in its exit path, after the exit event
                    self.maps.remove_process(pid)
                    with self._cond:
                        self._worker_counts["skipped_exited"] += 1
                        self._known.discard(pid)
            else:
                self.maps.remove_process(pid)
        except _Stopped:
            return False
        except Exception:  # one process's failure must not end the worker
            with self._cond:
                self._worker_counts["load_failed"] += 1
            if not self._failure_logged:
                self._failure_logged = True
                self._log.warning("unwind: loading pid=%d failed", pid, exc_info=True)
        now = time.thread_time()
        spent = now - cpu0
        with self._cond:
            if self._budget is not None:
                self._budget.charge(now - self._mark)
            if kind == "remove":
                self._known.discard(pid)
            if add:
                self._busy = 0
            self._cpu_s += spent
            self._worker_counts["worker_cpu_ms"] = int(self._cpu_s * 1e3)
            self._cond.notify_all()  # preload() waits for its pids
        return True

    def _walk_held(self, pid: int) -> None:
        """Worker thread: walk the copies held for ``pid`` and hand the samples back."""
        with self._cond:
            waiting = self._held.pop(pid)
        if not waiting:
            return
        walked = None
        try:
            ranges: Sequence[MappedRange] = ()
            if not self.maps.loaded(pid) and self._mappings_of is not None:
                ranges = self._mappings_of(pid, waiting[0].sample.time_ns)
                if ranges:
                    with self._cond:
                        self._held.counts["copies_from_snapshot"] += len(waiting)
            walked = self.maps.walk_copies(pid, [h.copy for h in waiting], ranges)
        finally:  # whatever happens, the samples go on (with their leaf frame if unwalked)
            with self._cond:
                self._held.finish(waiting, walked)
