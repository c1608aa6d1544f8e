"""Driver for bpf/unwind_selftest.bpf.c: load it, give it processes, read back unwound stacks.

Used by tests/collector/unwind and benchmarks/; the receivers' programs will include
bpf/unwind.h the same way and use UnwindMaps for their processes.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.bpf import AttachSpec, LoadedProgram, RingBuffer, load
from collector.unwind import layout as L
from collector.unwind.bpfstats import prog_stats
from collector.unwind.maps import UnwindMaps

PROGRAM = "unwind_selftest"
TABLES_FN = "uw_tables"
FP_FN = "uw_fp"
SWITCH_FN = "uw_switch"


@dataclass(frozen=True, slots=True)
class Sample:
    pid: int
    tid: int
    mode: int  # L.MODE_TABLES, L.MODE_FP or L.MODE_SWITCH
    reason: int  # L.END ... (L.REASONS names them)
    kernel: bool  # the sample interrupted kernel code
    frames: tuple[int, ...]  # user addresses, leaf first


def decode(rec: memoryview) -> Sample:
    pid, tid, mode, reason, n, flags = L.SAMPLE_HEADER.unpack_from(rec, 0)
    n = min(n, (len(rec) - L.SAMPLE_HEADER.size) // 8)
    frames = tuple(rec[L.SAMPLE_HEADER.size : L.SAMPLE_HEADER.size + 8 * n].cast("Q"))
    return Sample(pid, tid, mode, reason, bool(flags & L.SAMPLE_F_KERNEL), frames)


class Selftest:
    """The self-test program attached to cpu-clock at ``freq`` Hz on every CPU, with the
    table walker (and the frame-pointer baseline when ``fp`` is set) on the same samples, and
    with ``switch`` the walker on sched_switch too."""

    def __init__(
        self, freq: int = 199, fp: bool = True, switch: bool = False, rows: int = 1 << 20
    ) -> None:
        attach = [AttachSpec("perf_event", TABLES_FN, "cpu-clock", sample_freq=freq)]
        if fp:
            attach.append(AttachSpec("perf_event", FP_FN, "cpu-clock", sample_freq=freq))
        if switch:
            attach.append(AttachSpec("raw_tracepoint", SWITCH_FN, "sched_switch"))
        self.prog: LoadedProgram = load(PROGRAM, {"UNWIND_ROWS": rows}, attach)
        try:
            self.maps = UnwindMaps(
                self.prog.map("unwind_rows"),
                self.prog.map("unwind_mappings"),
                self.prog.map("unwind_procs"),
                self.prog.map("unwind_stats"),
            )
            self.ring = RingBuffer(self.prog.map("events"))
        except BaseException:
            self.prog.close()
            raise
        self.samples: list[Sample] = []

    def watch(self, pid: int) -> None:
        """Sample ``pid`` (after its mappings are loaded, or frame pointers only)."""
        self.prog.map("pid_filter").update(pid.to_bytes(4, "little"), b"\x01")

    def drain(self) -> int:
        return self.ring.drain(lambda rec: self.samples.append(decode(rec)))

    def lost(self) -> int:
        return self.prog.map("lost").percpu_u64_sum(b"\0\0\0\0")

    def run_stats(self, fn: str) -> tuple[int, int] | None:
        """(run_time_ns, run_cnt) of one of the two programs (needs bpf_stats enabled)."""
        return prog_stats(fn, self.prog.map("events"))

    def close(self) -> None:
        self.prog.detach()
        self.drain()
        self.ring.close()
        self.maps.close()
        self.prog.close()

    def __enter__(self) -> Selftest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
