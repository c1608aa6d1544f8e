"""go_runtime overhead: a goroutine- and channel-heavy Go program with and without the
collector's go_runtime receiver (default settings, every signal), interleaved.

The workload (tests/receivers/go_runtime/testdata/bench.go) serves REQUESTS requests: a
goroutine per request, a semaphore channel, a work queue to four hashing workers and a reply
channel (about 16 runtime events per request: go statement, goroutine exit, channel parks
and wake-ups, scheduling, allocations). ``--rounds-of-work`` sets the hashing per request,
the work between runtime events; the program times its own request loop.

``--variants plain,pprof`` also runs a build that imports net/http/pprof (as many services
do; no server is started): the Go runtime then samples allocations for its heap profile,
and the receiver probes those samples (runtime.profilealloc) instead of every allocation. In
the plain build the linker disables memory profiling and every mallocgc is probed.

Per work level it prints the median request-loop time without the collector and with it
(collector -> go_runtime -> symbolize -> pprof, the binary followed from its exec), their
ratio (the slowdown), the ratio of the program's own CPU time (user + system, from wait4:
what the probes cost it, much less disturbed than wall time by other load on the machine),
and the collector's CPU seconds per second of the loop. Modes alternate
in every round, so drift hits both alike.

Run as root after `make test` (or scripts/setup.sh test):
    .venv/bin/python benchmarks/go_runtime_overhead.py [--repeats 5] [--work 16,64,256] \
        [--variants plain,pprof]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from procstat import cpu_seconds  # noqa: E402

from tests.support import gotoolchains  # noqa: E402
from tests.support.collector_run import start_collector  # noqa: E402
from tests.support.pipelines import profiles_yaml  # noqa: E402

SRC = ROOT / "tests" / "receivers" / "go_runtime" / "testdata" / "bench.go"
# What a service that serves its profiles links: net/http/pprof's handlers (registered, no
# server started) keep the heap profile reachable, so the linker leaves the runtime's
# allocation sampling on. (A bare `import _ "runtime/pprof"` does not: its dead code goes.)
_PPROF = 'package main\n\nimport _ "net/http/pprof"\n'


def build_variant(variant: str, tmp: Path, version: str) -> Path:
    src = tmp / f"src-{variant}"
    src.mkdir()
    shutil.copy2(SRC, src / "bench.go")
    (src / "go.mod").write_text("module bench\n\ngo 1.21\n")
    if variant == "pprof":
        (src / "pprof.go").write_text(_PPROF)
    return gotoolchains.build(src, tmp / f"bench-{variant}", version)


def run_bench(binary: Path, requests: int, work: int, col=None) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """(seconds of the request loop, the program's CPU seconds, collector CPU seconds
    meanwhile)."""
    p = subprocess.Popen(
        [str(binary), str(requests), str(work)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdin is not None and p.stdout is not None
    assert p.stdout.readline().strip() == "ready"
    if col is not None:
        col.wait_for(lambda: f"probing pid={p.pid}" in col.stderr(), "the exec followed")
    before = cpu_seconds(col.proc.pid) if col is not None else 0.0
    p.stdin.write("\n")
    p.stdin.flush()
    out = p.stdout.read()
    _pid, status, usage = os.wait4(p.pid, 0)  # the program's own CPU time, from the kernel
    p.returncode = os.waitstatus_to_exitcode(status)
    after = cpu_seconds(col.proc.pid) if col is not None else 0.0
    m = re.search(r"elapsed_ns=(\d+)", out)
    assert p.returncode == 0 and m, out
    return int(m.group(1)) / 1e9, usage.ru_utime + usage.ru_stime, after - before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--requests", type=int, default=50_000)
    ap.add_argument("--work", default="16,64,256", help="hash rounds (1 KiB) per request")
    ap.add_argument("--variants", default="plain", help="plain and/or pprof (see above)")
    args = ap.parse_args()
    version = gotoolchains.LATEST
    variants = args.variants.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        binaries, copies = {}, {}
        for v in variants:
            binaries[v] = build_variant(v, Path(tmp), version)
            copies[v] = Path(tmp) / f"bench-{v}-copy"
            shutil.copy2(binaries[v], copies[v])
        config = Path(tmp) / "config.yaml"
        # one receiver per variant: each follows the execs of its binary
        receivers = {f"go_runtime/{v}": {"binary": b} for v, b in binaries.items()}
        out = Path(tmp) / "profiles"
        config.write_text(profiles_yaml(out, receivers, exporters=("pprof",), metrics_address=""))
        col = start_collector(config)
        try:
            load = Path("/proc/loadavg").read_text().split()[0]
            print(f"Go {version}, {args.requests} requests, {os.cpu_count()} CPUs, load "
                  f"average {load} at start, {args.repeats} interleaved repeats; "
                  "medians")  # fmt: skip
            print(f"{'variant':>8} {'work/request':>14} {'without s':>10} {'with s':>10} "
                  f"{'slowdown':>9} {'program CPU':>11} {'collector CPU':>14}")  # fmt: skip
            for work in (int(w) for w in args.work.split(",")):
                for v in variants:
                    base, probed, cpu, prog = [], [], [], []
                    for _ in range(args.repeats):
                        # The collector runs throughout and follows every exec of the binary:
                        # the baseline runs an identical copy (another inode) it does not watch.
                        t0, c0, _ = run_bench(copies[v], args.requests, work)
                        t, c, col_cpu = run_bench(binaries[v], args.requests, work, col)
                        base.append(t0)
                        probed.append(t)
                        prog.append(c / c0)
                        cpu.append(col_cpu / t)
                    b, w = statistics.median(base), statistics.median(probed)
                    print(f"{v:>8} {work:>11} rnd {b:>10.3f} {w:>10.3f} {w / b:>8.2f}x "
                          f"{statistics.median(prog):>10.2f}x {statistics.median(cpu):>11.2f} s/s",
                          flush=True)  # fmt: skip
        finally:
            col.stop()
            print(f"load average at the end: {Path('/proc/loadavg').read_text().split()[0]}")


if __name__ == "__main__":
    main()
