"""User stacks unwound in BPF from tables: the receiver's side of bpf/unwind.h.

A stack receiver whose program was built with UNWIND_TABLES owns one ``TableUnwinding``:
- processes are loaded into the walker's maps (``UnwindMaps.add_process``: ~1 ms with its
  binaries' tables loaded, 0.1-0.3 s per table to build) on a worker thread, never on the
  reader: the reader only queues pids (bounded; what does not fit is counted and that process
  stays on frame pointers until its next exec);
- events carry their user frames after the 64-byte header (decoded by
  collector.bpf.frames), and a walk that stopped before the outermost frame ends with a
  sentinel address naming why (collector.model.raw.UNWIND_STOP_BASE);
- every walk's end reason is counted (``unwind_<reason>`` from the unwind_stats map), with
  the table store's own counters (``unwind_tables_built``, ...).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from collector.bpf.loader import LoadedProgram
from collector.bpf.syscall import name_thread
from collector.unwind.maps import UnwindMaps

QUEUE_SIZE = 1024  # process loads waiting for the worker
_ADD, _REMOVE, _STOP, _MARK = 0, 1, 2, 3
PRELOAD_TIMEOUT_S = 5.0  # start() waits at most this long for the configured pids' tables
# Counted from the store and the maps (user space), as unwind_<name>; gauges are left out.
_USER_COUNTERS = (
    "processes_loaded",
    "process_slots_full",
    "mappings_overflow",
    "open_failed",
    "tables_built",
    "tables_failed",
    "tables_evicted",
    "tables_no_space",
)


class TableUnwinding:
    def __init__(
        self, prog: LoadedProgram, name: str, log: logging.Logger, count: Callable[[str, int], None]
    ) -> None:
        self._log = log
        self._count = count  # the receiver's counter (called on the reader thread only)
        self.maps = UnwindMaps(
            prog.map("unwind_rows"),
            prog.map("unwind_mappings"),
            prog.map("unwind_procs"),
            prog.map("unwind_stats"),
        )
        self._queue: queue.Queue[tuple[int, int]] = queue.Queue(QUEUE_SIZE)
        self._worker_counts = {"load_failed": 0}  # written by the worker, read by the reader
        self._kernel_prev: dict[str, int] = {}
        self._user_prev: dict[str, int] = {}
        self._failure_logged = False
        self._marked = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"{name}-unwind", daemon=True)
        self._thread.start()

    # -- reader thread -----------------------------------------------------------------

    def process_seen(self, pid: int) -> None:
        """The first event of a process since load or exec: load its mappings."""
        self._enqueue(_ADD, pid)

    def process_exec(self, pid: int) -> None:
        """Its old mappings are gone; its next event (EVENT_F_NEW_PID) loads the new ones."""
        self._enqueue(_REMOVE, pid)

    def process_exit(self, pid: int) -> None:
        self._enqueue(_REMOVE, pid)

    def preload(self, pids: list[int], timeout: float = PRELOAD_TIMEOUT_S) -> bool:
        """Load ``pids`` now and wait (bounded) until done: with a ``pids`` setting their
        libraries' tables are built before their first sample, not 0.1-0.3 s after it.
        False when the wait timed out (the loads go on in the background)."""
        for pid in pids:
            self._enqueue(_ADD, pid)
        self._marked.clear()
        self._enqueue(_MARK, 0)
        return self._marked.wait(timeout)

    def _enqueue(self, op: int, pid: int) -> None:
        try:
            self._queue.put_nowait((op, pid))
        except queue.Full:
            self._count("unwind_queue_full", 1)

    def read_counters(self) -> None:
        """Add the growth of the walk reasons and the worker's counters."""
        for name, value in self.maps.read_stats().items():
            self._count(f"unwind_{name}", value - self._kernel_prev.get(name, 0))
            self._kernel_prev[name] = value
        stats = self.maps.stats()
        now = {k: int(stats.get(k, 0)) for k in _USER_COUNTERS}
        now.update(self._worker_counts)
        for name, value in now.items():
            self._count(f"unwind_{name}", value - self._user_prev.get(name, 0))
            self._user_prev[name] = value

    # -- worker thread -----------------------------------------------------------------

    def _work(self) -> None:
        name_thread(self._thread.name)
        # Normal priority on purpose: at nice 19, two busy CPUs starved the builds for
        # seconds (a 3 s python run: 70 % of its samples before its tables, 11 % at nice 0).
        while True:
            op, pid = self._queue.get()
            if op == _STOP:
                return
            if op == _MARK:
                self._marked.set()
                continue
            try:
                if op == _ADD:
                    self.maps.add_process(pid)
                else:
                    self.maps.remove_process(pid)
            except Exception:  # one process's failure must not end the worker
                self._worker_counts["load_failed"] += 1
                if not self._failure_logged:
                    self._failure_logged = True
                    self._log.warning("unwind: loading pid=%d failed", pid, exc_info=True)

    def close(self) -> None:
        """Stop the worker (after what is queued), then release the maps' mmaps."""
        if self._thread.is_alive():
            self._queue.put((_STOP, 0))
            self._thread.join()
        self.maps.close()
