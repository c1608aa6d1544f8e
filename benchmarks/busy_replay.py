"""Busy hosts (issue #16) (c): a 96-CPU host's sample rate replayed through the whole pipeline.

Real live processes (N of M distinct binaries built here from busy_host.py's workload,
started, then SIGSTOPped: alive, mapped, costing no CPU) are snapshotted by the real process
table; raw batches synthesised in the shape the cpu receiver drains (950 samples per 0.1 s,
i.e. 9,500 samples/s = 96 CPUs x 99 Hz; leaf-first user stacks hot_<i> -> main -> libc in
each process's real address space, 30 % with kernel frames from /proc/kallsyms; the sample's
process drawn uniformly from the N, the worst case for every cache) go through the real
symbolizer, a 10 s window (ProfileWindows) and both the pprof and OTLP encoders. Each
configuration runs in a fresh child, so its RSS is its own. Printed per configuration:
collector CPU ms per 10k samples in steady state (and in the first window, which loads
every binary), that as a share of one core at 9,500 samples/s, the one-off snapshot cost per
process, RSS in total and per live process, against the target (<= 5 % of one core and
<= 100 MB + 20 KB per live process), the records per sample (the cpu attribute splits a
thread's samples by CPU; --sticky keeps each thread on one CPU) and the steady window's CPU by
stage (symbolize, dedup into the window, build, pprof, OTLP). --profile prints a cProfile top
15 of the steady windows. The binaries have .symtab but no DWARF (a SymCache build per binary
would be a one-off cost, measured in processors/symbolize/README.md).

    .venv/bin/python benchmarks/busy_host.py replay [--configs 1000x100,5000x1000 --seconds 60]
        [--sticky] [--profile] [--work DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RATE = 9_500  # samples/s: 96 CPUs at 99 Hz
BATCH = RATE // 10  # the cpu receiver drains every 0.1 s
WINDOW_S = 10
STAGES = ("symbolize", "dedup", "build", "pprof", "otlp")


def build(work: Path, count: int) -> list[Path]:
    """``count`` distinct binaries (own hot_<i>, own build id), two compilers at a time."""
    from benchmarks.busy_host import WORKLOAD  # the same program as (a)

    bins, running = [], []
    for i in range(count):
        out = work / f"wl_{i}"
        bins.append(out)
        if out.exists():
            continue
        src = work / f"wl_{i}.c"
        src.write_text(WORKLOAD % {"i": i})
        running.append(subprocess.Popen(["gcc", "-O1", "-o", str(out), str(src)]))
        if len(running) >= 2:
            running.pop(0).wait()
    for p in running:
        p.wait()
    return bins


def symbol(path: Path, name: str) -> int:
    out = subprocess.run(["nm", str(path)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise SystemExit(f"{name} not in {path}")


def stopped(path: Path) -> subprocess.Popen[bytes]:
    """Start the workload and SIGSTOP it once libc is mapped (past the dynamic loader), so
    thousands of them cost the machine no CPU: only one runs at a time, for a moment."""
    p = subprocess.Popen([str(path), "600"])
    for _ in range(2000):
        try:
            maps = Path(f"/proc/{p.pid}/maps").read_text().splitlines()
            if any(" r-xp " in ln and "libc" in ln for ln in maps):
                break
        except OSError:
            pass
        time.sleep(0.0005)
    p.send_signal(signal.SIGSTOP)
    return p


def rss_mb(key: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(spec: dict[str, object]) -> dict[str, float]:
    from collector.encoding import encode_pprof
    from collector.host import Host
    from collector.model import ProfileWindows, RawBatch, RawSample, cpu_profile_type
    from collector.otlp.encode import encode_profile_set
    from processors.symbolize import SymbolizeConfig, Symbolizer

    pids: list[int] = spec["pids"]  # type: ignore[assignment]
    binary_of: list[str] = spec["binary_of"]  # type: ignore[assignment]
    syms: dict[str, list[int]] = spec["symbols"]  # type: ignore[assignment]
    seconds = float(spec["seconds"])  # type: ignore[arg-type]
    n, m = len(pids), len(syms)
    pt = cpu_profile_type(99)
    host = Host()
    table = host.processes
    table.max_processes = max(table.max_processes, n + 64)  # the default 4096 < 5,000
    # Room for every binary and process (defaults 256 and 4096); see the README's caveat.
    config = SymbolizeConfig(max_binaries=max(256, m + 64), max_processes=max(4096, n + 64))
    symbolizer = Symbolizer(table, config, host.counters)
    kallsyms = Path("/proc/kallsyms").read_text().splitlines()
    kernel = [int(ln.split()[0], 16) + 4 for ln in kallsyms if " T " in ln][:500]
    rss0 = rss_mb()
    t0 = time.process_time()
    stacks: list[list[tuple[tuple[int, ...], tuple[int, ...]]]] = []
    for pid, path in zip(pids, binary_of, strict=True):
        snap = table.observe(pid)
        assert snap is not None, pid
        base = min(r.start - r.offset for r in snap.mappings if r.path == path)
        libc = next(r for r in snap.mappings if "libc" in r.path)
        hot, main = syms[path]
        user = (base + hot + 8, base + main + 20, libc.start + 0x1000)
        stacks.append(
            [(user, ()), (user, tuple(kernel[pid % 400 : pid % 400 + 5])), (user[1:], ())]
        )
    snapshot_ms = (time.process_time() - t0) * 1000 / n
    rnd = random.Random(7)
    now = time.time_ns()
    windows = ProfileWindows(10**8)
    per_window: list[float] = []
    stages: list[list[float]] = []  # per window: CPU s of each of STAGES
    split = [0.0] * len(STAGES)
    records: list[int] = []
    named = total = 0
    batches = int(seconds * 10)
    prof = cProfile.Profile() if spec.get("profile") else None
    sticky = bool(spec.get("sticky"))  # each thread on one CPU, not each sample on the next
    clock = time.process_time  # CPU of the pipeline only: making the samples is not counted
    for b in range(batches):
        samples = []
        for k in range(BATCH):
            i = rnd.randrange(n)
            user, kern = rnd.choices(stacks[i], (60, 30, 10))[0]
            ts = now + b * 100_000_000 + k * 100_000
            cpu = pids[i] % 96 if sticky else k % 96
            samples.append(RawSample(pids[i], pids[i], cpu, "wl", ts, 1, user, kern))
        if prof is not None and b >= WINDOW_S * 10:  # steady state only, after the first window
            prof.enable()
        t0 = clock()
        batch = symbolizer.symbolize(RawBatch(pt, samples, "cpu"))
        t1 = clock()
        windows.add(batch)
        t2 = clock()
        split[0] += t1 - t0
        split[1] += t2 - t1
        if (b + 1) % (WINDOW_S * 10) == 0:
            sets = windows.close_all()
            t3 = clock()
            for ps in sets:
                encode_pprof(ps)
            t4 = clock()
            for ps in sets:
                encode_profile_set(ps).SerializeToString()
            t5 = clock()
            split[2] += t3 - t2
            split[3] += t4 - t3
            split[4] += t5 - t4
            stages.append(split)
            per_window.append(sum(split))
            split = [0.0] * len(STAGES)
            records.append(sum(len(p.samples) for ps in sets for p in ps.processes))
            if len(per_window) == 1:
                named, total = _named(sets[0])
        if prof is not None:
            prof.disable()
    if prof is not None:  # to stderr: the parent shows it under the row
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(15)
    per_10k = 10_000 / (WINDOW_S * RATE)
    # steady state: the median window after the first (which loads every binary)
    order = sorted(range(1, len(per_window)), key=per_window.__getitem__) or [0]
    median = order[len(order) // 2]
    steady = per_window[median] if len(per_window) > 1 else 0.0
    rss1 = rss_mb()
    return {
        "first_ms": per_window[0] * 1000 * per_10k,
        "steady_ms": steady * 1000 * per_10k,
        "core_pct": steady / WINDOW_S * 100,
        "snapshot_ms": snapshot_ms,
        "rss_mb": rss1,
        "hwm_mb": rss_mb("VmHWM"),
        "kb_per_proc": (rss1 - rss0) * 1024 / n,
        "base_mb": rss0,
        "named": named / max(1, total),
        "open_pins": table.stats()["open_pins"],
        "stages_ms": [x * 1000 * per_10k for x in stages[median]],
        "records": records[median] / (WINDOW_S * RATE),
    }


def _named(ps: object) -> tuple[int, int]:
    """Samples whose leaf is the process's own hot_<i> or main, of all in the first window:
    70 % by construction (the other 30 % have kernel leaves), less if any went unnamed."""
    from benchmarks import profile_pb2
    from collector.encoding import pprof_message

    prof = profile_pb2.Profile.FromString(pprof_message(ps))  # type: ignore[arg-type]
    fn = {f.id: prof.string_table[f.name] for f in prof.function}
    loc = {lo.id: fn.get(lo.line[0].function_id, "") if lo.line else "" for lo in prof.location}
    total = sum(s.value[0] for s in prof.sample)
    named = sum(
        s.value[0] for s in prof.sample if loc[s.location_id[0]].startswith(("hot_", "main"))
    )
    return named, total


def run(args: argparse.Namespace) -> None:
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="busy-replay-"))
    work.mkdir(parents=True, exist_ok=True)
    bins = build(work, max(m for _, m in configs))
    syms = {str(b): [symbol(b, f"hot_{i}"), symbol(b, "main")] for i, b in enumerate(bins)}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the workers are killed
    print(
        f"replay at {RATE} samples/s (96 CPUs x 99 Hz), {args.seconds:.0f} s per configuration, "
        f"{WINDOW_S} s windows, pprof + OTLP encoded; steady = median window after the first; "
        "dKB/proc = RSS growth from before the snapshots to the end, per live process"
    )
    hdr = (
        f"{'procs':>6} {'bins':>5} {'first ms/10k':>12} {'steady ms/10k':>13} {'% core':>7} "
        f"{'snap ms/proc':>12} {'RSS MB':>7} {'dKB/proc':>8} {'target MB':>9} {'named':>6} "
        f"{'records':>7}  steady ms/10k by stage: {' / '.join(STAGES)}"
    )
    print(hdr, flush=True)
    for n, m in configs:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for i in range(n):
                procs.append(stopped(bins[i % m]))
            spec = {
                "pids": [p.pid for p in procs],
                "binary_of": [str(bins[i % m]) for i in range(n)],
                "symbols": {str(b): syms[str(b)] for b in bins[:m]},
                "seconds": args.seconds,
                "profile": args.profile,
                "sticky": args.sticky,
            }
            out = subprocess.run(
                [sys.executable, __file__, "--child"],
                input=json.dumps(spec),
                capture_output=True,
                text=True,
            )
            if out.returncode:
                raise SystemExit(f"{n}x{m} failed:\n{out.stderr}")
            r = json.loads(out.stdout.splitlines()[-1])
            target = 100 + 20 * n / 1024
            print(
                f"{n:>6} {m:>5} {r['first_ms']:>12.1f} {r['steady_ms']:>13.1f} "
                f"{r['core_pct']:>7.2f} {r['snapshot_ms']:>12.2f} {r['rss_mb']:>7.1f} "
                f"{r['kb_per_proc']:>8.1f} {target:>9.0f} {r['named']:>6.1%} "
                f"{r['records']:>7.1%}  {' / '.join(f'{x:.1f}' for x in r['stages_ms'])}",
                flush=True,
            )
            if args.profile:
                print(_top(out.stderr), flush=True)
        finally:
            for p in procs:
                p.kill()
            for p in procs:
                p.wait()


def _top(stats: str) -> str:
    """The cProfile table from the child's stderr, without the header's file paths."""
    lines = stats.splitlines()
    start = next((i for i, ln in enumerate(lines) if "function calls" in ln), 0)
    return "\n".join(ln.replace(str(ROOT) + "/", "") for ln in lines[start:] if ln.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="1000x100,1000x1000,5000x100,5000x1000")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--work", default="", help="where the binaries are built (kept)")
    ap.add_argument(
        "--profile", action="store_true", help="print a cProfile top 15 (steady state) per row"
    )
    ap.add_argument(
        "--sticky",
        action="store_true",
        help="each thread stays on one CPU (default: sample k on CPU k %% 96, the worst case for "
        "merging, since the cpu attribute splits records)",
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(json.loads(sys.stdin.read()))))
        return
    run(a)


if __name__ == "__main__":
    main()
