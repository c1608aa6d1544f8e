"""Which processes are probed, and how: the binary's facts into ``go_procs``, then per-process
uprobes (collector.bpf.uprobe) at the runtime functions' entries and RET instructions.

Uprobes are attached per process (the kernel plants the breakpoints only in that process's
memory), so other processes running the same binary never trap unless they are targets too.
Binaries are read once per (device, inode): a fleet of one binary costs one disassembly.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from collector.bpf.syscall import Map
from collector.bpf.uprobe import UprobeError, open_uprobe
from collector.elf.reader import ElfError
from collector.golang import NotGo, ProbedBinary, UnsupportedGo, read_go_binary
from collector.golang.binary import MALLOC_SPECIALISED
from receivers.go_runtime.events import CHAN_RANGES, GO_PROC

# (BPF function, runtime function, at its RETs instead of its entry), per signal. Entry
# probes sit on the function's frame push (collector.golang.rets.frame_push: emulated by the
# kernel, ten times cheaper than a single-stepped instruction); RETs are single-stepped, so
# only rare functions are probed there.
_PROBES: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "goroutines": (
        ("on_newproc", "runtime.newproc", False),
        ("on_runqput", "runtime.runqput", False),  # the new g, queued by newproc's closure
        ("on_goexit0", "runtime.goexit0", False),
    ),
    "sched_latency": (
        ("on_newproc", "runtime.newproc", False),
        ("on_runqput", "runtime.runqput", False),
        ("on_gopark", "runtime.gopark", False),
        ("on_gosched", "runtime.goschedImpl", False),  # preempted or yielding
        ("on_execute", "runtime.execute", False),
    ),
    "gc": (
        ("on_gcstart", "runtime.gcStart", False),
        ("on_stw", "runtime.stopTheWorldWithSema", False),
        ("on_stw_end", "runtime.startTheWorldWithSema", True),
    ),
    "alloc": (("on_malloc", "runtime.mallocgc", False),),
    "chan_block": (
        ("on_gopark", "runtime.gopark", False),
        ("on_runqput", "runtime.runqput", False),  # ready() queues the goroutine it wakes
    ),
}
CHAN_FUNCTIONS = ("runtime.chanrecv", "runtime.chansend", "runtime.selectgo")
# Without these a signal records nothing: missing one is an unsupported binary, not a guess.
_REQUIRED = {"runtime.newproc", "runtime.runqput", "runtime.gopark", "runtime.mallocgc"}


def probes_for(signals: list[str]) -> list[tuple[str, str, bool]]:
    out: list[tuple[str, str, bool]] = []
    for s in signals:
        for p in _PROBES[s]:
            if p not in out:
                out.append(p)
    return out


def bpf_functions(signals: list[str]) -> list[str]:
    return sorted({fn for fn, _rt, _ret in probes_for(signals)})


@dataclass(slots=True)
class Traced:
    pid: int
    binary: ProbedBinary
    fds: list[int]


@dataclass(frozen=True, slots=True)
class Plan:
    """One binary's uprobes: (BPF function, file offset), computed once per binary."""

    binary: ProbedBinary
    uprobes: tuple[tuple[str, int], ...]


class Targets:
    """The probed processes. ``add`` is idempotent per pid; ``remove`` closes its uprobes."""

    def __init__(
        self,
        signals: list[str],
        prog_fds: dict[str, int],
        go_procs: Map,
        log: logging.Logger,
        count: Callable[[str, int], None],
        component_id: str,
    ) -> None:
        self._probes = probes_for(signals)
        self._prog_fds = prog_fds
        self._go_procs = go_procs
        self._log = log
        self._count = count
        self._id = component_id
        self._binaries: dict[tuple[int, int], Plan | str] = {}  # (dev, ino) -> or why not
        self.traced: dict[int, Traced] = {}

    def plan_of(self, pid: int) -> Plan | str:
        """The uprobes for the process's Go binary, or why it cannot be probed (one line)."""
        exe = f"/proc/{pid}/exe"
        try:
            st = os.stat(exe)
            path = os.readlink(exe)
        except OSError as exc:
            return f"cannot read {exe}: {exc.strerror}"
        key = (st.st_dev, st.st_ino)
        known = self._binaries.get(key)
        if known is None:
            names = {rt for _fn, rt, _ret in self._probes} | set(CHAN_FUNCTIONS)
            try:
                known = self._plan(read_go_binary(path, names, open_path=exe))
            except NotGo:
                known = f"{path} is not a Go program (no Go build info)"
            except (UnsupportedGo, ElfError, OSError) as exc:
                known = f"{path}: {exc}"
            if len(self._binaries) > 4096:
                self._binaries.clear()
            self._binaries[key] = known
        return known

    def add(self, pid: int) -> bool:
        """Probe ``pid``; False (logged once, counted) when it is not a Go program we can
        probe. Other targets go on either way."""
        if pid in self.traced:
            return True
        plan = self.plan_of(pid)
        if isinstance(plan, str):
            self._log.warning("go_runtime: not probing pid=%d id=%s: %s", pid, self._id, plan)
            self._count("targets_skipped", 1)
            return False
        binary = plan.binary
        bias = _load_bias(pid, binary) if binary.pie else 0
        self._go_procs.update(_u32(pid), _go_proc(binary, bias))
        fds: list[int] = []
        try:
            for fn, offset in plan.uprobes:
                fds.append(open_uprobe(self._prog_fds[fn], f"/proc/{pid}/exe", offset, pid))
        except (UprobeError, OSError) as exc:
            for fd in fds:
                os.close(fd)
            self._go_procs.delete(_u32(pid))
            self._log.warning("go_runtime: cannot probe pid=%d id=%s: %s", pid, self._id, exc)
            self._count("targets_failed", 1)
            return False
        self.traced[pid] = Traced(pid, binary, fds)
        self._count("targets_probed", 1)
        self._count("uprobes_attached", len(fds))
        self._log.info(
            "go_runtime: probing pid=%d id=%s binary=%s version=%s uprobes=%d",
            pid, self._id, binary.path, binary.version, len(fds),
        )  # fmt: skip
        return True

    def _plan(self, binary: ProbedBinary) -> Plan | str:
        missing = sorted(
            rt for _fn, rt, _ret in self._probes if rt in _REQUIRED and rt not in binary.functions
        )
        if missing:
            return f"{binary.path} ({binary.version}) lacks {', '.join(missing)}"
        uprobes = [
            (fn, offset)
            for fn, rt, at_rets in self._probes
            for offset in self._offsets(binary, rt, at_rets)
        ]
        return Plan(binary, tuple(uprobes))

    def _offsets(self, binary: ProbedBinary, runtime_fn: str, at_rets: bool) -> list[int]:
        if at_rets:
            rets = list(binary.returns(runtime_fn))
            if not rets and runtime_fn in binary.functions:
                raise UnsupportedGo(f"{runtime_fn} has no RET instruction")
            return rets
        names = [runtime_fn]
        if runtime_fn == "runtime.mallocgc":  # and the size-specialised entry points
            names += [n for n in binary.functions if MALLOC_SPECIALISED.match(n)]
        return [o for n in names if (o := binary.entry(n)) is not None]

    def remove(self, pid: int) -> None:
        t = self.traced.pop(pid, None)
        if t is None:
            return
        for fd in t.fds:
            os.close(fd)
        self._go_procs.delete(_u32(pid))

    def close(self) -> None:
        for pid in list(self.traced):
            self.remove(pid)


def _u32(pid: int) -> bytes:
    return pid.to_bytes(4, "little")


def _go_proc(binary: ProbedBinary, bias: int) -> bytes:
    lo = [0] * CHAN_RANGES
    hi = [0] * CHAN_RANGES
    for i, name in enumerate(CHAN_FUNCTIONS):
        fn = binary.functions.get(name)
        if fn is not None:
            lo[i] = fn.start + bias
            hi[i] = fn.start + fn.size + bias
    pc, bp = binary.sched_offsets
    return GO_PROC.pack(binary.goid_offset, pc, bp, 0, *lo, *hi)


def _load_bias(pid: int, binary: ProbedBinary) -> int:
    """A PIE's load bias: where its first mapping (file offset 0) starts, minus its link-time
    address (Go links PIEs at 0x400000, not 0)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5] == binary.path and int(parts[2], 16) == 0:
                    return int(parts[0].split("-")[0], 16) - binary.load_base
    except OSError:
        pass
    return 0
