"""The start-up burst of table unwinding: collector CPU over consecutive windows from start.

The real CLI (cpu -> symbolize -> folded, whole machine, 99 Hz) is started once per
configuration, one after the other, rounds interleaved, on whatever the machine runs (here:
other engineers' test suites, i.e. a host starting new programs all the time). Per window of
``--window`` seconds from "started pipelines": the collector's CPU (user + system, all its
threads) as % of one core, and for its unwind worker thread alone. Configurations:

- ``frame_pointers``: no tables at all (the old default);
- ``auto/unbounded``: tables, budget 4 cores (no bound in effect), a fresh, empty cache;
- ``auto/cold``: the default budget (0.1 of a core), a fresh, empty cache (the first start);
- ``auto/warm``: the default budget with the cache ``auto/cold`` filled (a restart).

Also printed from the collector's totals: tables built and read from the cache, processes
loaded, queued ones that exited first, the worker's CPU and how often it waited for budget.

    .venv/bin/python benchmarks/unwind_startup.py --seconds 30 --rounds 2
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import procstat  # noqa: E402

from tests.support.pipelines import profiles_yaml  # noqa: E402

COLLECTOR = ROOT / ".venv" / "bin" / "collector"
TOTALS = (
    "unwind_tables_built",
    "unwind_tables_from_cache",
    "unwind_processes_loaded",
    "unwind_skipped_exited",
    "unwind_worker_cpu_ms",
    "unwind_budget_waits",
)


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of ``pid``, and the whole process's under "*"."""
    return {**procstat.thread_cpu(pid), "*": procstat.cpu_seconds(pid)}


def run(config: dict[str, object], work: Path, seconds: float, window: float) -> dict:
    out = work / "profiles"
    shutil.rmtree(out, ignore_errors=True)
    cfg = work / "c.yaml"
    cfg.write_text(profiles_yaml(out, {"cpu": {"frequency": 99, **config}}, interval=3600))
    log = work / "c.log"
    with log.open("w") as f:
        proc = subprocess.Popen(
            [str(COLLECTOR), "--config", str(cfg)],
            stdout=f,
            stderr=f,
            cwd=ROOT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    deadline = time.monotonic() + 180
    while "started pipelines" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"collector did not start:\n{log.read_text()}")
        time.sleep(0.05)
    windows: list[tuple[float, float]] = []
    prev, t_prev = thread_cpu(proc.pid), time.monotonic()
    for _ in range(int(seconds // window)):
        time.sleep(window)
        now, t_now = thread_cpu(proc.pid), time.monotonic()
        dt = t_now - t_prev
        worker = now.get("cpu-unwind", 0.0) - prev.get("cpu-unwind", 0.0)
        windows.append((100 * (now["*"] - prev["*"]) / dt, 100 * worker / dt))
        prev, t_prev = now, t_now
    proc.send_signal(signal.SIGINT)
    proc.wait(120)
    totals: dict[str, int] = {}
    for line in log.read_text().splitlines():
        if "msg='totals component=receivers/cpu" in line:
            totals = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    return {"windows": windows, "totals": {k: totals.get(k, 0) for k in TOTALS}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--window", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="unwind-startup-"))
    names = ["frame_pointers", "auto/unbounded", "auto/cold", "auto/warm"]
    results: dict[str, list[dict]] = {n: [] for n in names}
    try:
        for r in range(args.rounds):
            cold, unbounded = work / f"cache-{r}", work / f"cache-u{r}"
            configs = {
                "frame_pointers": {"unwind": "frame_pointers"},
                "auto/unbounded": {
                    "unwind": "auto",
                    "unwind_budget": 4,
                    "unwind_cache": str(unbounded),
                },
                "auto/cold": {"unwind": "auto", "unwind_cache": str(cold)},
                "auto/warm": {"unwind": "auto", "unwind_cache": str(cold)},  # after cold: filled
            }
            for name in names:
                with open("/proc/loadavg") as f:
                    load = f.read().split()[0]
                res = run(configs[name], work, args.seconds, args.window)
                res["load"] = float(load)
                results[name].append(res)
                cells = " ".join(f"{c:5.1f}/{w:4.1f}" for c, w in res["windows"])
                print(
                    f"round {r + 1} {name:<15} load {load:>5} {cells} {res['totals']}", flush=True
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\ncollector CPU % of one core per {args.window:.0f} s window from start "
        f"(median of {args.rounds} rounds; worker thread in brackets)"
    )
    for name in names:
        rs = results[name]
        cols = zip(*(x["windows"] for x in rs), strict=True)
        cells = []
        for col in cols:
            total, worker = (
                statistics.median(c for c, _ in col),
                statistics.median(w for _, w in col),
            )
            cells.append(f"{total:5.1f} ({worker:4.1f})")
        totals = {
            k.removeprefix("unwind_"): statistics.median(x["totals"][k] for x in rs) for k in TOTALS
        }
        print(f"{name:<15} {' '.join(cells)}  {totals}")
    loads = [x["load"] for rs in results.values() for x in rs]
    print(f"load average at the starts: {min(loads):.1f}-{max(loads):.1f}")


if __name__ == "__main__":
    main()
