"""Unwind tables: build cost per binary, and BPF time per sample with tables vs frame pointers.

Tables (no root needed): for libc, libpython3.11, python3.11 and a ~100 MB library (libLLVM-14,
which bcc itself depends on, so it is on every machine set up by scripts/setup.sh), each built in
a fresh child process: seconds (symbolic's part and our parse), rows, bytes in BPF, peak RSS
added, and the CPU time of reading it back from the on-disk table cache (what a restart
pays). pyelftools decoding libc's .eh_frame runs beside it as the reference for "why symbolic".

BPF (--bpf, root): bpf/unwind_selftest.bpf.c with both programs on the same cpu-clock samples of
the -O2 ground-truth workloads; bpf_stats gives run_time_ns / run_cnt of each program.

    .venv/bin/python benchmarks/unwind_tables.py [--rounds 3] [--bpf] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BINARIES = [
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0",
    "/usr/bin/python3.11",
    "/usr/lib/x86_64-linux-gnu/libLLVM-14.so.1",
]


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one(path: str) -> dict[str, float]:
    """Build one table in this (fresh) process and report what it cost."""
    from collector.unwind.breakpad import build_rows
    from collector.unwind.table import build_table, cfi_text

    before = _maxrss_mb()
    fd = os.open(path, os.O_RDONLY)
    t0 = time.perf_counter()
    table = build_table(fd, path)
    total = time.perf_counter() - t0
    peak = _maxrss_mb() - before
    # The two halves, timed again separately (the file is in the page cache by now).
    with tempfile.TemporaryFile() as f:
        t0 = time.perf_counter()
        cfi_text(f"/proc/self/fd/{fd}", f)
        t_symbolic = time.perf_counter() - t0
        lines = f.tell()
        f.seek(0)
        t0 = time.perf_counter()
        build_rows(f)
        t_parse = time.perf_counter() - t0
    os.close(fd)
    # What a restart pays instead: the same table read back from the on-disk cache, with all
    # its checks (collector/unwind/cache.py), in this process's CPU time.
    from collector.unwind.cache import TableCache

    with tempfile.TemporaryDirectory() as d:
        cache = TableCache(d)
        cache.save(table)
        t0 = time.process_time()
        got = cache.load(table.key)
        t_cache = time.process_time() - t0
        assert got is not None and got.rows.tobytes() == table.rows.tobytes()
    return {
        "cache_read_s": t_cache,
        "seconds": total,
        "symbolic_s": t_symbolic,
        "parse_s": t_parse,
        "text_mb": lines / 1e6,
        "rows": len(table),
        "functions": table.stats.functions,
        "bpf_bytes": table.nbytes,
        "peak_rss_mb": peak,
        "file_mb": os.path.getsize(path) / 1e6,
    }


def pyelftools_libc() -> tuple[float, int, int]:
    """Seconds for pyelftools to decode every FDE of libc's .eh_frame into rule tables, the
    rows it produced and the FDEs it could not decode."""
    from elftools.elf.elffile import ELFFile

    t0 = time.perf_counter()
    rows = failed = 0
    with open(BINARIES[0], "rb") as f:
        dwarf = ELFFile(f).get_dwarf_info()
        for entry in dwarf.EH_CFI_entries():
            if type(entry).__name__ != "FDE":
                continue
            try:
                rows += len(entry.get_decoded().table)
            except Exception:  # pyelftools raises assorted errors on opcodes it lacks
                failed += 1
    return time.perf_counter() - t0, rows, failed


def tables(rounds: int) -> None:
    print(f"table build, median of {rounds} fresh processes each (2-core VM, busy)")
    print(
        f"{'binary':<28} {'file MB':>8} {'seconds':>8} {'symbolic':>9} {'parse':>7}"
        f" {'rows':>9} {'BPF MB':>7} {'peak RSS +MB':>12} {'cache read ms':>13}"
    )
    for path in BINARIES:
        if not os.path.exists(path):
            print(f"{path}: not on this machine")
            continue
        runs = []
        for _ in range(rounds):
            out = subprocess.run(
                [sys.executable, __file__, "--one", path],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            runs.append(json.loads(out))

        def med(k: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[k] for r in runs)

        print(
            f"{Path(path).name:<28} {med('file_mb'):>8.1f} {med('seconds'):>8.3f}"
            f" {med('symbolic_s'):>9.3f} {med('parse_s'):>7.3f} {int(med('rows')):>9}"
            f" {med('bpf_bytes') / 1e6:>7.2f} {med('peak_rss_mb'):>12.1f}"
            f" {med('cache_read_s') * 1e3:>13.1f}"
        )
    ours = statistics.median(
        json.loads(
            subprocess.run(
                [sys.executable, __file__, "--one", BINARIES[0]],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )["seconds"]
        for _ in range(rounds)
    )
    runs = [pyelftools_libc() for _ in range(rounds)]
    elftools = statistics.median(r[0] for r in runs)
    print(
        f"libc .eh_frame decoded by pyelftools: {elftools:.2f} s ({runs[0][1]} rows,"
        f" {runs[0][2]} FDEs it cannot decode); by symbolic + our parse: {ours:.3f} s"
        f" ({elftools / ours:.0f}x faster)"
    )


def _delta(st: object, fn: str, before: tuple[int, int]) -> tuple[int, int]:
    now = st.run_stats(fn) or (0, 0)  # type: ignore[attr-defined]
    return now[0] - before[0], now[1] - before[1]


def bpf(seconds: float) -> None:
    """ns per unwound sample = (run time - filtered runs x their cost) / workload samples.

    Both programs run on every cpu-clock sample of both CPUs and return at the pid filter for
    other processes; that cost (measured first, with no pid watched) is taken out so the
    figure is what one unwound sample costs."""
    from collector.unwind import layout as L
    from collector.unwind.bpfstats import enable_stats, restore_stats
    from collector.unwind.selftest import FP_FN, TABLES_FN, Selftest
    from tests.support.workloads import build

    was_on = enable_stats()
    try:
        print(
            f"\nBPF ns per unwound sample, 499 Hz, both programs on the same samples, {seconds} s"
        )
        print(
            f"{'workload':<16} {'samples':>8} {'frames':>7} {'tables ns':>10} {'fp ns':>7}"
            f" {'ratio':>6} {'filtered ns':>12} {'add_process cold/warm ms':>25}"
        )
        for name in ("unwind_callers", "unwind_qsort"):
            binary = build(name, ("-O2", "-fomit-frame-pointer"))
            with Selftest(freq=499) as st:
                base_t, base_f = st.run_stats(TABLES_FN) or (0, 0), st.run_stats(FP_FN) or (0, 0)
                time.sleep(2)
                idle_t, idle_f = _delta(st, TABLES_FN, base_t), _delta(st, FP_FN, base_f)
                filt_t, filt_f = idle_t[0] / max(idle_t[1], 1), idle_f[0] / max(idle_f[1], 1)
                proc = subprocess.Popen(
                    [str(binary), str(seconds)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert proc.stdout is not None and proc.stdin is not None
                proc.stdout.readline()
                a0 = time.perf_counter()
                st.maps.add_process(proc.pid)  # cold: builds the binary's, libc's, ld.so's tables
                cold = time.perf_counter() - a0
                a0 = time.perf_counter()
                st.maps.add_process(proc.pid)  # again: every table is loaded already
                warm = time.perf_counter() - a0
                st.watch(proc.pid)
                t0, f0 = st.run_stats(TABLES_FN) or (0, 0), st.run_stats(FP_FN) or (0, 0)
                proc.stdin.write("go\n")
                proc.stdin.flush()
                while proc.poll() is None:
                    time.sleep(0.2)
                    st.drain()
                st.drain()
                (tt, tn), (ft, fn) = _delta(st, TABLES_FN, t0), _delta(st, FP_FN, f0)
                mine = [s for s in st.samples if s.pid == proc.pid and s.mode == L.MODE_TABLES]
                n_fp = sum(1 for s in st.samples if s.pid == proc.pid and s.mode == L.MODE_FP)
                depth = statistics.mean(len(s.frames) for s in mine) if mine else 0
                tns = (tt - (tn - len(mine)) * filt_t) / max(len(mine), 1)
                fns = (ft - (fn - n_fp) * filt_f) / max(n_fp, 1)
                print(
                    f"{name:<16} {len(mine):>8} {depth:>7.1f} {tns:>10.0f} {fns:>7.0f}"
                    f" {tns / max(fns, 1):>6.1f} {filt_t:>12.0f}"
                    f" {cold * 1e3:>17.1f} / {warm * 1e3:.2f}"
                )
    finally:
        restore_stats(was_on)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bpf", action="store_true", help="also measure BPF ns per sample (root)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    tables(args.rounds)
    if args.bpf:
        bpf(args.seconds)


if __name__ == "__main__":
    main()
