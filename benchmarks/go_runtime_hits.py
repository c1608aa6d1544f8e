"""Where the go_runtime receiver's overhead goes: the benchmark workload (bench.go) probed in
process by one signal at a time, against the same program unprobed, interleaved.

Per configuration it prints the program's request-loop time and its CPU time (user + system,
from wait4: what the probes cost the program, whatever else loads the machine), the probe hits
per BPF function (bpf_stats run_cnt), and the program's extra CPU per hit next to the BPF run
time per hit (bpf_stats run_time_ns), and the program's context switches per request
unprobed > probed (rusage). Extra CPU per hit minus BPF time is the trap and what it
disturbs; elapsed time per hit larger than CPU per hit means the hits sit on the program's
critical path (e.g. the scheduler, with other goroutines waiting for it).

Run as root after `make test` (or scripts/setup.sh test); bpf_stats is on for the run:
    .venv/bin/python benchmarks/go_runtime_hits.py [--requests 20000] [--work 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from go_runtime_overhead import build_variant  # noqa: E402

from collector.component import CreateSettings  # noqa: E402
from collector.host import Host  # noqa: E402
from collector.unwind.bpfstats import enable_stats, prog_stats, restore_stats  # noqa: E402
from receivers.go_runtime import factory  # noqa: E402
from receivers.go_runtime.targets import bpf_functions  # noqa: E402
from tests.support import gotoolchains  # noqa: E402

CONFIGS: dict[str, list[str]] = {
    "gc": ["gc"],
    "goroutines": ["goroutines"],
    "chan_block": ["chan_block"],
    "sched_latency": ["sched_latency"],
    "alloc": ["alloc"],
    "all": ["goroutines", "sched_latency", "gc", "alloc", "chan_block"],
}


class _Drop:
    def consume(self, batch: object) -> bool:
        return True


def _start(binary: Path, requests: int, work: int) -> subprocess.Popen[str]:
    p = subprocess.Popen(
        [str(binary), str(requests), str(work)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def _finish(p: subprocess.Popen[str]) -> tuple[float, float, int]:
    """(request-loop seconds, CPU seconds of the program, its context switches)."""
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write("\n")
    p.stdin.flush()
    out = p.stdout.read()
    _pid, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    m = re.search(r"elapsed_ns=(\d+)", out)
    assert p.returncode == 0 and m, out
    switches = usage.ru_nvcsw + usage.ru_nivcsw
    return int(m.group(1)) / 1e9, usage.ru_utime + usage.ru_stime, switches


async def _probed(binary: Path, requests: int, work: int, signals: list[str]):  # type: ignore[no-untyped-def]
    p = _start(binary, requests, work)
    cfg = factory.config_model.model_validate({"pids": [p.pid], "signals": signals})
    receiver = factory.create(
        CreateSettings("go_runtime", logging.getLogger("bench"), _Drop()), cfg
    )  # fmt: skip
    await receiver.start(Host())
    try:
        go_procs = receiver._prog.map("go_procs")  # type: ignore[attr-defined]
        names = bpf_functions(signals)
        before = {n: prog_stats(n, go_procs) or (0, 0) for n in names}
        elapsed, cpu, switches = await asyncio.to_thread(_finish, p)
        after = {n: prog_stats(n, go_procs) or (0, 0) for n in names}
    finally:
        await receiver.shutdown()
    hits = {n: after[n][1] - before[n][1] for n in names}
    bpf_ns = sum(after[n][0] - before[n][0] for n in names)
    return elapsed, cpu, switches, hits, bpf_ns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--work", type=int, default=64, help="hash rounds (1 KiB) per request")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variant", default="plain", help="plain or pprof (go_runtime_overhead)")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    was_on = enable_stats()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            binary = build_variant(args.variant, Path(tmp), gotoolchains.LATEST)
            load = Path("/proc/loadavg").read_text().split()[0]
            print(f"{args.variant} build, {args.requests} requests x {args.work} rounds, "
                  f"load average {load}; medians of {args.repeats}")  # fmt: skip
            print(f"{'signals':>14} {'elapsed':>8} {'cpu':>7} {'hits/req':>9} "
                  f"{'+cpu/hit':>9} {'+wall/hit':>10} {'bpf/hit':>8} {'csw/req':>11}  "
                  "hits")  # fmt: skip
            for name in args.configs.split(","):
                rows = []
                for _ in range(args.repeats):
                    base_elapsed, base_cpu, base_sw = _finish(
                        _start(binary, args.requests, args.work)
                    )
                    elapsed, cpu, sw, hits, bpf_ns = asyncio.run(
                        _probed(binary, args.requests, args.work, CONFIGS[name])
                    )
                    n = max(1, sum(hits.values()))
                    rows.append((elapsed / base_elapsed, cpu / base_cpu, n,
                                 (cpu - base_cpu) / n * 1e6, (elapsed - base_elapsed) / n * 1e6,
                                 bpf_ns / n / 1e3, base_sw / args.requests,
                                 sw / args.requests, hits))  # fmt: skip
                med = [statistics.median(r[i] for r in rows) for i in range(8)]
                last = rows[-1][8]
                per = " ".join(f"{k.removeprefix('on_')}={v // args.requests}" for k, v in
                               sorted(last.items(), key=lambda kv: -kv[1]) if v)  # fmt: skip
                print(f"{name:>14} {med[0]:>7.2f}x {med[1]:>6.2f}x {med[2] / args.requests:>9.1f} "
                      f"{med[3]:>7.2f}us {med[4]:>8.2f}us {med[5]:>6.2f}us "
                      f"{med[6]:>5.2f}>{med[7]:<5.2f}  {per}",
                      flush=True)  # fmt: skip
    finally:
        restore_stats(was_on)
        print(f"load average at the end: {Path('/proc/loadavg').read_text().split()[0]}")


if __name__ == "__main__":
    main()
