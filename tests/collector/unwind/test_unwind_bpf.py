"""bpf/unwind.h on the real kernel against -O2 workloads built without frame pointers.

Each workload prints "ready" once its mappings are final and waits; the test loads its tables
(the binary, libc, ld.so, the vDSO), starts it, and samples it at 499 Hz with two programs on
the same perf events: the table walker and the kernel's frame-pointer walker (bpf_get_stack),
so the same run shows what tables add; a third program unwinds tasks as they switch out.
Frames are named with ``nm`` ranges, an independent reader of the binary; runtime addresses
become link-time ones through the mapping at file offset 0 (gcc's PIE loads its first segment
at vaddr 0), not through the code under test.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from collector.proc.procfs import MapLine, read_maps
from collector.unwind import layout as L
from collector.unwind.selftest import Sample, Selftest
from tests.support.workloads import build, symbol_ranges

pytestmark = pytest.mark.bpf

# -O2 without frame pointers: the last -f flag wins over the -fno-omit-frame-pointer of the
# shared base flags.
O2 = ("-O2", "-fomit-frame-pointer")


@dataclass
class Run:
    binary: Path
    output: str
    tables: list[Sample]
    fp: list[Sample]
    switch: list[Sample]  # tasks switching out (sched_switch)
    base: int  # load address of the binary (its mapping at file offset 0)
    ranges: dict[str, tuple[int, int]]
    stats: dict[str, int]

    def names(self, s: Sample) -> list[str]:
        """Function of the program for each frame (leaf first); "" outside the program."""
        out = []
        for i, addr in enumerate(s.frames):
            vaddr = addr - self.base - (1 if i else 0)  # return addresses: the call itself
            out.append(next((n for n, (lo, hi) in self.ranges.items() if lo <= vaddr < hi), ""))
        return out


def _run(st: Selftest, name: str, seconds: str) -> Run:
    binary = build(name, O2)
    proc = subprocess.Popen(
        [str(binary), seconds], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "ready\n"
        entries = st.maps.add_process(proc.pid)
        assert entries, "mappings of the workload were not loaded"
        by_path = {Path(e.path).name: e for e in entries}
        assert by_path[binary.name].row_count > 0
        assert by_path["libc.so.6"].row_count > 0
        assert by_path["[vdso]"].row_count > 0  # built from its in-memory image
        maps = read_maps(proc.pid, executable_only=False) or []
        base = next(m.start for m in maps if m.offset == 0 and m.path == str(binary))
        st.watch(proc.pid)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        while proc.poll() is None:
            time.sleep(0.1)
            st.drain()
        output = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    st.drain()
    st.maps.remove_process(proc.pid)
    mine = [s for s in st.samples if s.pid == proc.pid]
    return Run(
        binary,
        output,
        [s for s in mine if s.mode == L.MODE_TABLES],
        [s for s in mine if s.mode == L.MODE_FP],
        [s for s in mine if s.mode == L.MODE_SWITCH],
        base,
        symbol_ranges(binary),
        st.maps.read_stats(),
    )


@pytest.fixture(scope="module")
def selftest() -> Selftest:
    with Selftest(freq=499, switch=True) as st:
        yield st


def _share(samples: list[Sample], run: Run, pred) -> float:  # type: ignore[no-untyped-def]
    return sum(1 for s in samples if pred(run.names(s))) / max(len(samples), 1)


def test_three_callers_of_one_leaf_split_by_time(selftest: Selftest) -> None:
    run = _run(selftest, "unwind_callers", "5")
    truth = dict(kv.split("=") for kv in run.output.split())
    ns = {c: int(truth[f"{c}_ns"]) for c in "abc"}
    assert len(run.tables) >= 300, f"too few samples: {len(run.tables)}"

    reach_main = _share(run.tables, run, lambda names: "main" in names)
    whole = sum(1 for s in run.tables if s.reason == L.END) / len(run.tables)
    fp_main = _share(run.fp, run, lambda names: "main" in names)
    print(
        f"tables: {len(run.tables)} samples, {reach_main:.1%} reach main, {whole:.1%} whole;"
        f" frame pointers: {len(run.fp)} samples, {fp_main:.1%} reach main; {run.stats}"
    )
    assert reach_main >= 0.90
    assert whole >= 0.90
    # The baseline on the same samples: frame pointers lose the callers of an -O2 leaf.
    assert len(run.fp) >= 300
    assert fp_main <= 0.10

    # The caller right above hot(), for samples in hot (clock reads are a few % elsewhere).
    callers = Counter(
        names[1] for s in run.tables if len(names := run.names(s)) > 1 and names[0] == "hot"
    )
    in_callers = sum(callers[f"caller_{c}"] for c in "abc")
    assert in_callers >= 0.9 * sum(callers.values()), callers
    total_ns = sum(ns.values())
    for c in "abc":
        got, want = callers[f"caller_{c}"] / in_callers, ns[c] / total_ns
        print(f"caller_{c}: {got:.1%} of samples, {want:.1%} of CPU time")
        assert abs(got - want) <= 0.05, (c, got, want, callers)


def test_callback_under_libc_qsort_shows_its_caller(selftest: Selftest) -> None:
    run = _run(selftest, "unwind_qsort", "3")
    in_cmp = [s for s in run.tables if run.names(s)[:1] == ["compare"]]
    assert len(in_cmp) >= 200, f"too few samples in compare: {len(in_cmp)} of {len(run.tables)}"
    # Between compare and sort_batch there are only libc frames (qsort, msort...).
    through_libc = [s for s in in_cmp if run.names(s)[1] == ""]
    shown = _share(in_cmp, run, lambda names: "sort_batch" in names)
    fp_cmp = [s for s in run.fp if run.names(s)[:1] == ["compare"]]
    fp_shown = _share(fp_cmp, run, lambda names: "sort_batch" in names)
    print(
        f"compare: {len(in_cmp)} samples, {shown:.1%} show sort_batch"
        f" ({len(through_libc)} with a libc caller); frame pointers: {fp_shown:.1%}"
    )
    assert len(through_libc) >= 0.9 * len(in_cmp)
    assert shown >= 0.85
    assert _share(in_cmp, run, lambda names: "main" in names) >= 0.85
    assert fp_shown <= 0.10


def test_samples_in_the_kernel_unwind_from_the_saved_user_registers(selftest: Selftest) -> None:
    run = _run(selftest, "unwind_syscalls", "3")
    kernel = [s for s in run.tables if s.kernel]
    assert len(kernel) >= 100, f"too few kernel-mode samples: {len(kernel)} of {len(run.tables)}"
    shown = _share(kernel, run, lambda names: "in_kernel" in names and "main" in names)
    print(f"kernel-mode samples: {len(kernel)} of {len(run.tables)}, {shown:.1%} reach main")
    assert shown >= 0.90


def test_tasks_switching_out_unwind_from_their_saved_registers(selftest: Selftest) -> None:
    run = _run(selftest, "unwind_sleeper", "2")
    assert len(run.switch) >= 500, f"too few switch-outs: {len(run.switch)}"
    shown = _share(run.switch, run, lambda names: "sleeper" in names and "main" in names)
    whole = sum(1 for s in run.switch if s.reason == L.END) / len(run.switch)
    print(f"switch-outs: {len(run.switch)}, {shown:.1%} reach sleeper and main, {whole:.1%} whole")
    assert shown >= 0.90
    assert whole >= 0.90


def test_process_without_mappings_falls_back_to_frame_pointers(selftest: Selftest) -> None:
    binary = build("unwind_callers", O2)
    before = len(selftest.samples)
    proc = subprocess.Popen(
        [str(binary), "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    assert proc.stdout.readline() == "ready\n"
    selftest.watch(proc.pid)  # sampled, but no mappings loaded
    proc.stdin.write("go\n")
    proc.stdin.flush()
    proc.communicate(timeout=60)
    selftest.drain()
    mine = [
        s
        for s in selftest.samples[before:]
        if s.pid == proc.pid and s.mode == L.MODE_TABLES and not s.kernel
    ]
    assert len(mine) >= 50
    reasons = Counter(L.REASONS[s.reason] for s in mine)
    # Every walk says it stopped for want of a table; none claims to be a whole stack.
    assert reasons["no_process"] == len(mine), reasons


def test_processes_of_one_binary_share_its_tables_until_the_last_goes(selftest: Selftest) -> None:
    binary = build("unwind_callers", O2)
    procs = [
        subprocess.Popen([str(binary), "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        before = selftest.maps.stats()
        first = {Path(e.path).name: e for e in selftest.maps.add_process(procs[0].pid) or []}
        after_one = selftest.maps.stats()
        second = {Path(e.path).name: e for e in selftest.maps.add_process(procs[1].pid) or []}
        after_two = selftest.maps.stats()
        for name in (binary.name, "libc.so.6"):
            assert first[name].row_first == second[name].row_first  # one slice, two processes
            assert first[name].row_count == second[name].row_count > 0
        assert after_two["rows_used"] == after_one["rows_used"]
        assert after_two["tables_built"] == after_one["tables_built"]
        assert after_two["processes_active"] == before["processes_active"] + 2
        for p in procs:
            selftest.maps.remove_process(p.pid)
        gone = selftest.maps.stats()
        assert gone["processes_active"] == before["processes_active"]
        assert gone["process_slots_free"] == before["process_slots_free"]
        # Unreferenced tables stay loaded (idle) for the next process of the same binaries.
        assert gone["tables_idle"] >= 2 and gone["rows_used"] == after_two["rows_used"]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_mappings_beyond_the_per_process_cap_are_dropped_and_counted(selftest: Selftest) -> None:
    lines = [
        MapLine(0x10000 * (i + 1), 0x10000 * (i + 1) + 0x1000, "r-xp", 0, 0, "") for i in range(70)
    ]
    before = selftest.maps.stats()["mappings_overflow"]
    entries = selftest.maps.add_process(1 << 22, lines)  # a tgid no process has: only the maps
    try:
        assert entries is not None and len(entries) == L.MAX_MAPPINGS
        assert [e.start for e in entries] == [ln.start for ln in lines[: L.MAX_MAPPINGS]]
        assert all(e.row_count == 0 for e in entries)  # anonymous: frame pointers
        assert selftest.maps.stats()["mappings_overflow"] == before + 70 - L.MAX_MAPPINGS
    finally:
        selftest.maps.remove_process(1 << 22)


def _compare_samples(st: Selftest, pid: int, run: Run, seconds: float) -> list[list[str]]:
    """Names of the table walks of ``pid`` whose leaf is compare(), sampled for ``seconds``."""
    st.drain()
    st.samples.clear()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.1)
        st.drain()
    walks = [s for s in st.samples if s.pid == pid and s.mode == L.MODE_TABLES]
    return [names for names in map(run.names, walks) if names and names[0] == "compare"]


def test_a_reload_adds_code_mapped_since_without_a_gap(selftest: Selftest) -> None:
    """A process loaded before one of its libraries was mapped (ld.so still at work at its
    first sample, or a dlopen later) stops at that library's first frame (no_mapping) until
    it is reloaded; the reload switches it to a new slot in one update and frees the old."""
    binary = build("unwind_qsort", O2)
    proc = subprocess.Popen(
        [str(binary), "6"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    st = selftest
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == "ready\n"
        lines = read_maps(proc.pid) or []
        before = st.maps.stats()
        st.maps.add_process(proc.pid, [ln for ln in lines if "libc.so" not in ln.path])
        maps = read_maps(proc.pid, executable_only=False) or []
        base = next(m.start for m in maps if m.offset == 0 and m.path == str(binary))
        run = Run(binary, "", [], [], [], base, symbol_ranges(binary), {})
        st.watch(proc.pid)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        without = _compare_samples(st, proc.pid, run, 1.0)
        entries = st.maps.add_process(proc.pid)  # what the receiver does at a no_mapping stop
        assert entries and any(Path(e.path).name == "libc.so.6" for e in entries)
        reloaded = st.maps.stats()
        again = st.maps.add_process(proc.pid)  # nothing new mapped: a read of the maps alone
        assert again == entries
        after = st.maps.stats()
        with_libc = _compare_samples(st, proc.pid, run, 2.0)
    finally:
        proc.kill()
        proc.wait()
        st.maps.remove_process(proc.pid)
    assert len(without) >= 50 and len(with_libc) >= 100, (len(without), len(with_libc))
    # Without libc's mapping the walk stops inside qsort: compare's caller is never found.
    assert sum("sort_batch" in n for n in without) <= 0.05 * len(without)
    assert sum("sort_batch" in n and "main" in n for n in with_libc) >= 0.90 * len(with_libc)
    assert reloaded["reloads"] == before["reloads"] + 1
    assert after["reloads_unchanged"] == reloaded["reloads_unchanged"] + 1
    # One slot in use before and after the reload: the old one was freed.
    assert reloaded["process_slots_free"] == before["process_slots_free"] - 1
    assert reloaded["processes_loaded"] == before["processes_loaded"] + 1


def test_unlink_at_exec_hides_the_old_image_and_the_removal_still_frees_its_slot(
    selftest: Selftest,
) -> None:
    """What the reader does at an exec (its own map handle) and what the worker does after."""
    lines = [MapLine(0x10000, 0x11000, "r-xp", 0, 0, "")]
    tgid = (1 << 22) + 1  # a tgid no process has: only the maps
    procs = selftest.prog.map("unwind_procs")
    key = tgid.to_bytes(4, "little")
    free = selftest.maps.stats()["process_slots_free"]
    assert selftest.maps.add_process(tgid, lines)
    assert procs.lookup(key) is not None
    selftest.maps.unlink(tgid)
    assert procs.lookup(key) is None  # the walker no longer finds the old image
    assert selftest.maps.stats()["process_slots_free"] == free - 1  # still the worker's
    selftest.maps.remove_process(tgid)  # the worker's removal: the key is gone already
    assert selftest.maps.stats()["process_slots_free"] == free
    twin = procs.twin()
    twin.close()  # a twin does not own the descriptor
    assert procs.lookup(key) is None and procs.fd >= 0
