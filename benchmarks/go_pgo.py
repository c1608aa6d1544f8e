"""Does the collector's profile make `go build -pgo` as fast as Go's own profile does?

tests/workloads/go/pgohot (an interface call and a hot direct call in its hot loop) is built
three ways with one toolchain: without PGO; with a profile from Go's runtime/pprof
(``-cpuprofile``); and with ``collector pgo`` run over the pprof files the real collector
(cpu receiver, unwind: tables, symbolize, pprof exporter) wrote while the same binary ran.
Then the three binaries run a fixed amount of work, interleaved in a shuffled order each
round, and the medians and their ratios are printed side by side. Root (BPF).

    .venv/bin/python benchmarks/go_pgo.py --rounds 21 --profile-seconds 10
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import gotoolchains as gt  # noqa: E402
from tests.support.collector_run import start_collector  # noqa: E402
from tests.support.pgo_check import collector_pgo  # noqa: E402
from tests.support.pipelines import profiles_yaml  # noqa: E402


def _seconds(binary: Path, iterations: int) -> tuple[float, float]:
    """(wall seconds the program measured, its user+system CPU seconds from wait4). CPU time
    is what the comparison uses: on a shared machine wall time also counts the waits for a
    core, which other processes decide."""
    proc = subprocess.Popen(
        [str(binary), "-iterations", str(iterations)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{binary} exited {proc.returncode}")
    return float(out.split("seconds=")[1].split()[0]), usage.ru_utime + usage.ru_stime


def _build(version: str, out: Path, pgo: Path | None) -> Path:
    flags = [f"-pgo={pgo}"] if pgo else ["-pgo=off"]
    gt.go(version, "build", "-o", str(out), *flags, ".", cwd=gt.WORKLOADS / "pgohot")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--version", default=gt.NEW, help="Go toolchain (tests/support/gotoolchains)")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--iterations", type=int, default=30_000_000)
    ap.add_argument("--profile-seconds", type=float, default=10.0)
    args = ap.parse_args()
    if args.version not in gt.toolchains():
        sys.exit(f"Go {args.version} is not installed (scripts/setup.sh test)")
    tmp = Path(tempfile.mkdtemp(prefix="go_pgo-"))
    base = _build(args.version, tmp / "base" / "pgohot", None)
    secs = str(args.profile_seconds)

    go_prof = tmp / "go.pprof"
    subprocess.run(
        [str(base), "-seconds", secs, "-cpuprofile", str(go_prof)], check=True, capture_output=True
    )

    out = tmp / "profiles"
    cfg = tmp / "collector.yaml"
    cpu = {"frequency": 199, "comm": "^pgohot$", "unwind": "tables"}
    cfg.write_text(profiles_yaml(out, {"cpu": cpu}, exporters=("pprof",), interval=5))
    col = start_collector(cfg)
    try:
        subprocess.run([str(base), "-seconds", secs], check=True, capture_output=True)
    finally:
        rc = col.stop()
    if rc != 0:
        sys.exit(f"collector exited {rc}:\n{col.logs()}")
    ours = tmp / "default.pgo"
    r = collector_pgo(out, base, ours)
    if r.returncode != 0:
        sys.exit(r.stderr)
    print(r.stderr.strip())

    variants = {
        "no PGO": base,
        "PGO, Go runtime/pprof": _build(args.version, tmp / "go" / "pgohot", go_prof),
        "PGO, collector pgo": _build(args.version, tmp / "ours" / "pgohot", ours),
    }
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    for binary in variants.values():
        _seconds(binary, args.iterations // 10)  # warm the page cache
    for _ in range(args.rounds):
        order = list(variants)
        random.shuffle(order)
        for name in order:
            w, c = _seconds(variants[name], args.iterations)
            wall[name].append(w)
            cpu[name].append(c)
    med = {k: statistics.median(v) for k, v in cpu.items()}
    base_s = med["no PGO"]
    print(f"Go {args.version}, {args.iterations} iterations, {args.rounds} interleaved rounds")
    print(
        f"{'build':24} {'CPU s median':>12} {'min':>6} {'max':>6} {'wall median':>11} "
        f"{'speed-up (CPU)':>14}"
    )
    for k, v in cpu.items():
        print(
            f"{k:24} {med[k]:12.3f} {min(v):6.3f} {max(v):6.3f} "
            f"{statistics.median(wall[k]):11.3f} {base_s / med[k]:13.3f}x"
        )
    go_gain = base_s / med["PGO, Go runtime/pprof"] - 1
    our_gain = base_s / med["PGO, collector pgo"] - 1
    print(
        f"speed-up from the collector's profile / from Go's own: {our_gain:+.1%} / {go_gain:+.1%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
