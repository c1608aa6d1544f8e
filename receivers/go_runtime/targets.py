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
    # A `go` statement is seen at the runqput of its new g (called by newproc's closure,
    # CREATE_FUNCTIONS): the go statement's stack is walked from there, no trap in newproc.
    # and no probe at a goroutine's exit: goroutines_live reads which still live (profiles.py)
    "goroutines": (("on_runqput", "runtime.runqput", False),),
    "sched_latency": (
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
    # Per process: the runtime's own heap-profile samples (one hit per MemProfileRate bytes)
    # when the program profiles memory, else every allocation (on_malloc, sampled in BPF).
    "alloc": (
        ("on_profilealloc", "runtime.profilealloc", False),
        ("on_malloc", "runtime.mallocgc", False),
    ),
    "chan_block": (
        ("on_gopark", "runtime.gopark", False),
        ("on_runqput", "runtime.runqput", False),  # ready() queues the goroutine it wakes
    ),
}
CHAN_FUNCTIONS = ("runtime.chanrecv", "runtime.chansend", "runtime.selectgo")
CREATE_FUNCTIONS = ("runtime.newproc", "runtime.newproc.func1")
# Without these a signal records nothing: missing one is an unsupported binary, not a guess.
_REQUIRED = {"runtime.runqput", "runtime.gopark", "runtime.mallocgc"}
_SAMPLED_ALLOC = ("on_profilealloc", "runtime.profilealloc", False)
_EVERY_ALLOC = ("on_malloc", "runtime.mallocgc", False)

Probe = tuple[str, str, bool]


def probes_for(signals: list[str], alloc_sampling: str = "auto") -> list[Probe]:
    out: list[Probe] = []
    for s in signals:
        for p in _PROBES[s]:
            if p not in out and not (p == _SAMPLED_ALLOC and alloc_sampling == "mallocgc"):
                out.append(p)
    return out


def bpf_functions(signals: list[str], alloc_sampling: str = "auto") -> list[str]:
    return sorted({fn for fn, _rt, _ret in probes_for(signals, alloc_sampling)})


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
    # the alloc signal's: at every allocation, or at the runtime's samples (empty when the
    # program never samples: memory profiling disabled by the linker, or unknown)
    every_alloc: tuple[tuple[str, int], ...] = ()
    sampled_alloc: tuple[tuple[str, int], ...] = ()
    newproc_site: int = 0  # link-time address of newproc's entry probe site (0: unknown)


class Targets:
    """The probed processes. ``add`` is idempotent per pid; ``remove`` closes its uprobes."""

    def __init__(
        self,
        probes: list[Probe],
        prog_fds: dict[str, int],
        go_procs: Map,
        log: logging.Logger,
        count: Callable[[str, int], None],
        component_id: str,
    ) -> None:
        self._probes = probes
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
            names = {rt for _fn, rt, _ret in self._probes} | {*CHAN_FUNCTIONS, *CREATE_FUNCTIONS}
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
        self._go_procs.update(_u32(pid), _go_proc(plan, bias))
        alloc = plan.every_alloc
        if plan.sampled_alloc and _live_rate(pid, binary, bias) != 0:
            alloc = plan.sampled_alloc
        fds: list[int] = []
        try:
            for fn, offset in plan.uprobes + alloc:
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
            "go_runtime: probing pid=%d id=%s binary=%s version=%s uprobes=%d alloc=%s",
            pid, self._id, binary.path, binary.version, len(fds),
            "none" if not alloc else "runtime" if alloc is plan.sampled_alloc else "mallocgc",
        )  # fmt: skip
        return True

    def _plan(self, binary: ProbedBinary) -> Plan | str:
        required = {rt for _fn, rt, _ret in self._probes if rt in _REQUIRED}
        if "runtime.runqput" in required:  # creations are known by their caller
            required |= set(CREATE_FUNCTIONS)
        missing = sorted(required - set(binary.functions))
        if missing:
            return f"{binary.path} ({binary.version}) lacks {', '.join(missing)}"

        def sites(probes: list[Probe]) -> tuple[tuple[str, int], ...]:
            return tuple(
                (fn, offset)
                for fn, rt, at_rets in probes
                for offset in self._offsets(binary, rt, at_rets)
            )

        common = [p for p in self._probes if p not in (_SAMPLED_ALLOC, _EVERY_ALLOC)]
        sampled = ()
        if _SAMPLED_ALLOC in self._probes and binary.memory_profiling and binary.mem_profile_rate:
            sampled = sites([_SAMPLED_ALLOC])
        every = sites([_EVERY_ALLOC]) if _EVERY_ALLOC in self._probes else ()
        # read now: the code is opened through the first process's /proc/<pid>/exe
        fn, site = binary.functions.get("runtime.newproc"), binary.entry("runtime.newproc")
        newproc = fn.start + (site - fn.offset) if fn is not None and site is not None else 0
        return Plan(binary, sites(common), every, sampled, newproc)

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


def _go_proc(plan: Plan, bias: int) -> bytes:
    binary = plan.binary
    lo = [0] * CHAN_RANGES
    hi = [0] * CHAN_RANGES
    for i, name in enumerate(CHAN_FUNCTIONS):
        fn = binary.functions.get(name)
        if fn is not None:
            lo[i] = fn.start + bias
            hi[i] = fn.start + fn.size + bias
    pc, bp = binary.sched_offsets
    rate = binary.mem_profile_rate + bias if binary.mem_profile_rate else 0
    create = _range(binary, "runtime.newproc.func1", bias)
    newproc = _range(binary, "runtime.newproc", bias)
    newproc_pc = plan.newproc_site + bias if plan.newproc_site else 0
    return GO_PROC.pack(
        binary.goid_offset, pc, bp, 0, *lo, *hi, rate, *create, newproc_pc, *newproc
    )


def _range(binary: ProbedBinary, name: str, bias: int) -> tuple[int, int]:
    fn = binary.functions.get(name)
    return (fn.start + bias, fn.start + fn.size + bias) if fn is not None else (0, 0)


def _live_rate(pid: int, binary: ProbedBinary, bias: int) -> int | None:
    """The process's runtime.MemProfileRate now (a program may set it to 0 itself), None if
    unreadable. A process caught at its exec reads the initial 512 KiB: the runtime zeroes it
    only when the linker disabled memory profiling, which the plan already knows."""
    try:
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as f:
            f.seek(binary.mem_profile_rate + bias)
            return int.from_bytes(f.read(8), "little")
    except (OSError, OverflowError, ValueError):
        return None


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
