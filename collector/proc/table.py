"""The thread-safe store of process snapshots that receivers fill and the symbolizer reads."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict, deque

from collector.proc import procfs
from collector.proc.fdbudget import FdBudget
from collector.proc.limits import pin_budget
from collector.proc.pinned import PinError, PinnedFile, map_files_path, open_regular, stat_regular
from collector.proc.snapshot import MappedRange, Snapshot
from collector.telemetry import Counters

log = logging.getLogger(__name__)
COUNTER_GROUP = "processes"
MIN_REFRESH_S = 0.05  # the least time between two refreshes of one process's maps
MAX_VERIFIED = 4096  # files remembered as stat-ed recently (cleared when full)


class ProcessTable:
    """Snapshots of /proc/<pid> keyed by pid and process lifetime, with mapped files pinned.

    Writers (the receiver's reader thread, or the symbolizer refreshing) take the lock; readers
    call ``lookup`` without it (one dict get of an immutable tuple).
    Bounds: at most ``max_processes`` snapshots (least recently observed go first), exited ones
    kept ``grace_s`` seconds, at most ``max_pinned`` pins holding a descriptor (fewer under a
    low open-file limit; the least recently used are parked and reopened on demand, see
    fdbudget.py), at most ``max_mappings``
    executable mappings per snapshot (``maps_truncated``). Files are only ever opened through
    the kernel's references (/proc/PID/map_files, /proc/PID/exe), never by a path string.
    """

    def __init__(
        self,
        counters: Counters,
        grace_s: float = 60.0,
        max_processes: int = 4096,
        max_pinned: int = 2048,
        max_idle_pinned: int = 256,
        revalidate_s: float = 1.0,
        max_mappings: int = 16384,
    ) -> None:
        self.counters = counters
        self.grace_s = grace_s
        self.max_processes = max_processes
        self.max_pinned = max_pinned  # bounded by the open-file limit at first pin
        self._fds: FdBudget | None = None
        self.max_idle_pinned = max_idle_pinned
        self.revalidate_s = revalidate_s
        self.max_mappings = max_mappings
        self._lock = threading.RLock()
        self._by_pid: dict[int, tuple[Snapshot, ...]] = {}
        self._lru: OrderedDict[int, Snapshot] = OrderedDict()  # id(snapshot) -> snapshot
        self._checked: dict[int, float] = {}  # pid -> monotonic time of last stat check
        self._ended: deque[tuple[float, Snapshot]] = deque()
        self._files: dict[tuple[int, int, int, int], PinnedFile] = {}
        # (maps device, inode) -> (monotonic time of its stat, pin): a file another snapshot
        # stat-ed less than revalidate_s ago is taken without a stat of its own (see _pin).
        self._verified: dict[tuple[int, int], tuple[float, PinnedFile]] = {}
        self._idle: OrderedDict[tuple[int, int, int, int], PinnedFile] = OrderedDict()
        self._boot_ns = procfs.boot_time_ns()

    # ---- writer side -------------------------------------------------------------------
    def observe(self, pid: int) -> Snapshot | None:
        """Snapshot ``pid`` now unless a current snapshot exists. Cheap when known: a dict get,
        plus one /proc/<pid>/stat read at most every ``revalidate_s`` to catch a reused pid."""
        if pid <= 0:
            return None
        snaps = self._by_pid.get(pid)
        now = time.monotonic()
        with self._lock:
            self._sweep(now)
            latest = snaps[-1] if snaps else None
            if latest is not None and not latest.ended_ns:
                self._lru.move_to_end(id(latest))
                if now - self._checked.get(pid, 0.0) < self.revalidate_s:
                    return latest
                self._checked[pid] = now
                st = procfs.read_stat(pid)
                if st is None or st[1] == latest.start_time:
                    return latest
                self._end(latest, now)  # the pid was reused without an exit report
            return self._take(pid, since_ns=0)

    def exec(self, pid: int, at_ns: int = 0) -> Snapshot | None:
        """``pid`` called exec at wall-clock ``at_ns`` (0: now): end the old image's snapshot
        and take a fresh one now. The new image's samples are those after ``at_ns``: on a busy
        host the exec event may be read seconds after it happened, and samples taken in
        between belong to the new image, not the old."""
        now = time.monotonic()
        at_ns = at_ns or time.time_ns()
        with self._lock:
            self._sweep(now)
            snaps = self._by_pid.get(pid)
            if snaps and not snaps[-1].ended_ns:
                snaps[-1].exec_ns = at_ns
                self._end(snaps[-1], now)
            return self._take(pid, since_ns=at_ns)

    def exit(self, pid: int) -> None:
        """``pid`` exited: keep its snapshot ``grace_s`` seconds for late samples."""
        now = time.monotonic()
        with self._lock:
            snaps = self._by_pid.get(pid)
            if snaps and not snaps[-1].ended_ns:
                self._end(snaps[-1], now)
            self._checked.pop(pid, None)
            self._sweep(now)

    def refresh(self, snap: Snapshot, sample_ns: int = 0, force: bool = False) -> Snapshot:
        """Re-read the maps of a live process (e.g. an address past a dlopen); returns the
        snapshot to use. Once per snapshot, then at most every ``revalidate_s``, or sooner
        (after MIN_REFRESH_S) for a sample taken at ``sample_ns`` after the maps were read:
        the first refresh may have come while ld.so was still mapping libraries, and an
        address sampled since may be in one of them. ``force``: now (the caller has read code
        mappings the snapshot lacks)."""
        now = time.monotonic()
        with self._lock:
            snaps = self._by_pid.get(snap.pid)
            if not snaps or snaps[-1] is not snap or snap.ended_ns:
                return snap
            age = now - snap.taken_mono
            held = age < self.revalidate_s and not (
                sample_ns > snap.taken_ns and age >= MIN_REFRESH_S
            )
            if snap.refreshed and held and not force:
                return snap
            st = procfs.read_stat(snap.pid)
            if st is None or st[1] != snap.start_time:
                return snap
            new = self._take(snap.pid, since_ns=snap.since_ns, replace=snap)
            return new or snap

    def close(self) -> None:
        with self._lock:
            for snap in list(self._lru.values()):
                self._release(snap)
            for f in list(self._idle.values()):
                f.close()
            self._idle.clear()
            self._files.clear()

    # ---- reader side -------------------------------------------------------------------
    def lookup(self, pid: int, time_ns: int = 0) -> Snapshot | None:
        """The snapshot a sample of ``pid`` taken at wall-clock ``time_ns`` belongs to: the
        newest whose lifetime began at or before it, unless an exec ended that image before
        the sample (0 = the newest). Lock-free."""
        snaps = self._by_pid.get(pid)
        if not snaps:
            return None
        if not time_ns:
            return snaps[-1]
        for s in reversed(snaps):
            if s.since_ns <= time_ns:
                # After the exec that replaced it: the new image's, which was not snapshotted.
                return None if s.exec_ns and time_ns >= s.exec_ns else s
        return None

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "snapshots": len(self._lru),
                "pids": len(self._by_pid),
                "pinned_files": len(self._files),
                "open_pins": len(self._fds) if self._fds is not None else 0,
            }

    # ---- internals (lock held) ---------------------------------------------------------
    def _take(self, pid: int, since_ns: int, replace: Snapshot | None = None) -> Snapshot | None:
        st = procfs.read_stat(pid)
        maps = procfs.read_maps(pid) if st else None
        if st is None or maps is None:
            self.counters.add(COUNTER_GROUP, "observe_gone")
            return None
        comm, start_time = st
        if len(maps) > self.max_mappings:  # a process can map a file 65530 times
            self.counters.add(COUNTER_GROUP, "maps_truncated")
            maps = maps[: self.max_mappings]
        start_ns = self._boot_ns + start_time * (1_000_000_000 // procfs.CLK_TCK)
        ranges = []
        now = time.monotonic()
        for m in maps:
            pinned = None
            if m.inode and m.path.startswith("/"):
                pinned = self._pin(pid, m, now)
            ranges.append(MappedRange(m.start, m.end, m.offset, m.path, pinned))
        exe = procfs.read_exe(pid)
        if not maps and not exe and not procfs.is_kernel_thread(pid):
            # Past its exit (a zombie, or sampled in the kernel's exit path after the exit
            # tracepoint): no image to snapshot, and no exit event would ever end this one.
            self.counters.add(COUNTER_GROUP, "observe_exited")
            return None
        exe_file = self._pin_exe(pid, ranges, exe)
        snap = Snapshot(
            pid=pid,
            start_time=start_time,
            since_ns=max(start_ns, since_ns),
            comm=comm,
            exe_path=exe.removesuffix(" (deleted)"),
            container_id=procfs.read_container_id(pid),
            mappings=tuple(sorted(ranges, key=lambda r: r.start)),
            exe_file=exe_file,
            taken_mono=time.monotonic(),
            taken_ns=time.time_ns(),
            refreshed=replace is not None,
            nspid=procfs.read_nspid(pid),
        )
        for f in snap.files():
            f.refs += 1
            self._idle.pop(f.identity, None)
        old = self._by_pid.get(pid, ())
        if replace is not None:
            self._by_pid[pid] = tuple(snap if s is replace else s for s in old)
            self._forget(replace)
        else:
            self._by_pid[pid] = (*old, snap)
        self._lru[id(snap)] = snap
        self._checked[pid] = time.monotonic()
        self.counters.add(COUNTER_GROUP, "snapshots_taken")
        while len(self._lru) > self.max_processes:
            victim = next(iter(self._lru.values()))
            self.counters.add(COUNTER_GROUP, "snapshots_evicted")
            self._remove(victim)
        return snap

    def _pin(self, pid: int, m: procfs.MapLine, now: float) -> PinnedFile | None:
        ref = map_files_path(pid, m.start, m.end)
        pinned = self._recent_pin(m.dev, m.inode, now)
        if pinned is not None:
            pinned.add_source(ref)
            return pinned
        try:
            st = stat_regular(ref)
            if st.st_ino != m.inode:  # the range was remapped since maps was read
                raise PinError("pin_changed")
            pinned = self._pin_stat(st, ref, m.path)
        except PinError as e:
            self.counters.add(COUNTER_GROUP, e.reason)
            return None
        if pinned is not None:
            if len(self._verified) >= MAX_VERIFIED:
                self._verified.clear()
            self._verified[(m.dev, m.inode)] = (now, pinned)
        return pinned

    def _recent_pin(self, dev: int, inode: int, now: float) -> PinnedFile | None:
        """The pin of the file a maps line names by ``dev`` and ``inode`` if a snapshot
        stat-ed it less than revalidate_s ago and the pin holds its descriptor: then it is
        the same file (an inode number cannot be reused while the inode is open). An exec
        storm maps the same dozen libraries into every process, and the stat of map_files
        was a tenth of the collector's CPU. Only a rewrite in place (same inode, new size or
        mtime) within revalidate_s goes unseen meanwhile. Lock-free: one dict get."""
        got = self._verified.get((dev, inode))
        if got is None or now - got[0] >= self.revalidate_s or not got[1].is_open:
            return None
        return got[1]

    def verified_identity(self, dev: int, inode: int) -> tuple[int, int, int, int] | None:
        """(dev, inode, size, mtime) of a file stat-ed a moment ago (see _recent_pin), for
        the unwind worker; None: the caller stats it."""
        pinned = self._recent_pin(dev, inode, time.monotonic())
        return None if pinned is None else pinned.identity

    def _pin_stat(self, st: os.stat_result, ref: str, name: str) -> PinnedFile | None:
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        pinned = self._files.get(key)
        if pinned is not None:
            pinned.add_source(ref)  # a way back to it while this process lives
            return pinned
        fds = self._fd_budget()
        if len(fds) >= fds.limit:
            self._evict_idle_pin()  # an unreferenced pin goes before a live one is parked
        fd, fst = open_regular(ref, st)
        pinned = PinnedFile(fd, fst, name.removesuffix(" (deleted)"), ref, fds)
        existing = self._files.get(pinned.identity)
        if existing is not None:  # it changed size or mtime between stat and open
            pinned.close()
            return existing
        self._files[pinned.identity] = pinned
        return pinned

    def _fd_budget(self) -> FdBudget:
        if self._fds is None:  # at first use: after the collector raised its limit
            self._fds = FdBudget(pin_budget(self.max_pinned), self.counters)
            self._fds.on_first_park = self._log_parking
        return self._fds

    def _log_parking(self) -> None:
        assert self._fds is not None
        log.warning(
            "open pinned files limited to %d (max_pinned=%d, open-file limit allows %d): "
            "the least recently used are closed and reopened on demand, counted as "
            "pin_parked and pin_reopened",
            self._fds.limit,
            self.max_pinned,
            pin_budget(1 << 30),
        )

    def _evict_idle_pin(self) -> None:
        """Close the least recently used pin no snapshot holds, to make room for a live one."""
        if self._idle:
            key, f = self._idle.popitem(last=False)
            self._files.pop(key, None)
            f.close()
            self.counters.add(COUNTER_GROUP, "pin_idle_closed")

    def _pin_exe(self, pid: int, ranges: list[MappedRange], exe: str) -> PinnedFile | None:
        for r in ranges:
            if r.file is not None and r.path == exe:
                return r.file
        if not exe:
            return None  # a kernel thread, or gone: nothing to pin
        ref = f"/proc/{pid}/exe"  # the kernel's reference, like map_files
        try:
            return self._pin_stat(stat_regular(ref), ref, exe)
        except PinError as e:
            self.counters.add(COUNTER_GROUP, e.reason)
            return None

    def _end(self, snap: Snapshot, now: float) -> None:
        snap.ended_ns = time.time_ns()
        self._ended.append((now + self.grace_s, snap))

    def _sweep(self, now: float) -> None:
        while self._ended and self._ended[0][0] <= now:
            _, snap = self._ended.popleft()
            self._remove(snap)

    def _remove(self, snap: Snapshot) -> None:
        snaps = self._by_pid.get(snap.pid)
        if snaps and any(s is snap for s in snaps):
            rest = tuple(s for s in snaps if s is not snap)
            if rest:
                self._by_pid[snap.pid] = rest
            else:
                del self._by_pid[snap.pid]
                self._checked.pop(snap.pid, None)
        self._forget(snap)

    def _forget(self, snap: Snapshot) -> None:
        if self._lru.pop(id(snap), None) is not None:
            self._release(snap)

    def _release(self, snap: Snapshot) -> None:
        for f in snap.files():
            f.refs -= 1
            if f.refs <= 0:
                self._idle[f.identity] = f
                self._idle.move_to_end(f.identity)
        while len(self._idle) > self.max_idle_pinned:
            key, f = self._idle.popitem(last=False)
            self._files.pop(key, None)
            f.close()
