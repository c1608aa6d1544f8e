"""CPU profiling overhead: the collector against bcc's `profile` tool, side by side in one run.

On a busy machine (one spinning worker per core) it measures, for no profiler, the collector
(cpu -> symbolize -> folded + pprof at 99 Hz) and bcc's `profile -F 99`:
  - the workload's throughput, as a ratio to no profiler (slowdown);
  - the profiler's CPU seconds per wall second at steady state;
  - the profiler's peak RSS (VmHWM; for the collector also its short-lived bcc loader child);
  - time from start to the first written profile (collector, 1 s flush interval, busy).
Modes alternate over several rounds so drift hits them alike; medians are printed.

Run as root after `make test` (or scripts/setup.sh test):
    .venv/bin/python benchmarks/cpu_overhead.py [--rounds 3] [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COLLECTOR = ROOT / ".venv" / "bin" / "collector"
sys.path.insert(0, str(ROOT))

from procstat import cpu_seconds, status_kb  # noqa: E402

from tests.support.pipelines import profiles_yaml  # noqa: E402

BCC_PROFILE = shutil.which("profile-bpfcc") or "/usr/sbin/profile-bpfcc"


def config(out: Path, interval: int) -> str:
    """cpu at 99 Hz -> symbolize -> folded + pprof every ``interval`` seconds."""
    return profiles_yaml(
        out,
        {"cpu": {"frequency": 99}},
        exporters=("folded", "pprof"),
        interval=interval,
        metrics_address=None,
    )


def build_busy(work: Path) -> Path:
    out = work / "busy"
    subprocess.run(["gcc", "-O1", "-o", str(out), str(HERE / "busy.c")], check=True)
    return out


def _default_sigint() -> None:
    # A benchmark started in the background inherits SIGINT ignored; bcc's profile would
    # then never see the Ctrl-C that ends it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Profiler:
    def __init__(self, mode: str, work: Path) -> None:
        self.mode = mode
        self.log = work / f"{mode}.log"
        self.out = work / f"{mode}-profiles"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log.open("w")
        if self.mode == "collector":
            cfg = self.log.with_suffix(".yaml")
            cfg.write_text(config(self.out, 10))
            cmd = [str(COLLECTOR), "--config", str(cfg)]
        else:
            cmd = [BCC_PROFILE, "-F", "99", "3600"]
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=log, cwd=ROOT, preexec_fn=_default_sigint
        )
        marker = "started pipelines" if self.mode == "collector" else "Sampling at"
        deadline = time.monotonic() + 120
        while marker not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.mode} did not start:\n{self.log.read_text()}")
            time.sleep(0.1)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def loader_child_peak_mb(self) -> float | None:
        m = re.search(r"child_peak_rss_mb=([\d.]+)", self.log.read_text())
        return float(m.group(1)) if m else None


def run_load(busy: Path, seconds: float) -> int:
    workers = [
        subprocess.Popen([str(busy), str(seconds)], stdout=subprocess.PIPE)
        for _ in range(os.cpu_count() or 1)
    ]
    return sum(int(w.communicate()[0]) for w in workers)


def measure(mode: str, busy: Path, seconds: float, work: Path) -> dict[str, float]:
    if mode == "none":
        return {"throughput": run_load(busy, seconds)}
    prof = Profiler(mode, work)
    prof.start()
    try:
        time.sleep(2.0)  # past start-up: steady state only
        pid = prof.proc.pid  # type: ignore[union-attr]
        c0, t0 = cpu_seconds(pid), time.monotonic()
        throughput = run_load(busy, seconds)
        c1, t1 = cpu_seconds(pid), time.monotonic()
        hwm = status_kb(pid, "VmHWM") / 1024
    finally:
        prof.stop()
    res = {"throughput": throughput, "cpu_per_s": (c1 - c0) / (t1 - t0), "peak_rss_mb": hwm}
    child = prof.loader_child_peak_mb()
    if child is not None:
        res["loader_child_peak_mb"] = child
    return res


def time_to_first_profile(work: Path, busy: Path) -> float:
    """Seconds from spawning the collector to its first profile file, on a busy machine."""
    load = [
        subprocess.Popen([str(busy), "60"], stdout=subprocess.DEVNULL)
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        return _first_profile(work)
    finally:
        for p in load:
            p.kill()
            p.wait()


def _first_profile(work: Path) -> float:
    out = work / "first"
    shutil.rmtree(out, ignore_errors=True)
    cfg = work / "first.yaml"
    cfg.write_text(config(out, 1))
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(COLLECTOR), "--config", str(cfg)], stderr=subprocess.DEVNULL, cwd=ROOT
    )
    try:
        while not (out.exists() and any(out.glob("*.folded"))):
            if proc.poll() is not None or time.monotonic() - t0 > 120:
                raise SystemExit("collector wrote no profile")
            time.sleep(0.05)
        return time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0, help="load duration per measurement")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the profilers load BPF programs")
    work = Path(tempfile.mkdtemp(prefix="cpu-bench-"))
    busy = build_busy(work)
    modes = ["none", "collector", "bcc-profile"]
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for r in range(args.rounds):
        order = modes[r % 3 :] + modes[: r % 3]
        for mode in order:
            res = measure(mode, busy, args.seconds, work)
            results[mode].append(res)
            print(f"round {r + 1} {mode:<12} " + " ".join(f"{k}={v:.4g}" for k, v in res.items()))
    firsts = [time_to_first_profile(work, busy) for _ in range(3)]

    def med(mode: str, key: str) -> float:
        vals = [x[key] for x in results[mode] if key in x]
        return statistics.median(vals) if vals else float("nan")

    base = med("none", "throughput")
    print(
        f"\n{os.cpu_count()} busy workers, {args.seconds:.0f} s per measurement, "
        f"{args.rounds} rounds, medians"
    )
    print(f"{'':<14}{'throughput':>12}{'vs none':>9}{'CPU %core':>11}{'peak RSS MB':>13}")
    for mode in modes:
        tp = med(mode, "throughput")
        cpu = med(mode, "cpu_per_s") * 100
        rss = med(mode, "peak_rss_mb")
        print(f"{mode:<14}{tp:>12.0f}{tp / base:>9.4f}{cpu:>11.3f}{rss:>13.1f}")
    child = med("collector", "loader_child_peak_mb")
    print(f"collector loader child peak RSS (lives ~1 s at start-up): {child:.1f} MB")
    runs = ", ".join(f"{x:.2f}" for x in firsts)
    first = statistics.median(firsts)
    print(f"time to first profile (1 s flush, busy machine): median {first:.2f} s (runs: {runs})")
    rss_ratio = med("collector", "peak_rss_mb") / med("bcc-profile", "peak_rss_mb")
    print(f"ratio: collector/bcc peak RSS = {rss_ratio:.3f}")
    print("note: bcc's profile aggregates in the kernel and does its user-space work (symbolizing")
    print("everything) only at exit, so its steady-state CPU is ~0; the collector symbolizes and")
    print("writes profiles continuously, which is what its CPU figure pays for.")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
