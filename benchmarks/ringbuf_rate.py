"""Does the cpu receiver keep up with its ring buffer at 1x, 10x and 20x the default rate?

For each frequency (99, 999, 1999 Hz by default) it runs the real collector CLI
(cpu -> symbolize -> folded + pprof, the default pipeline, files every 10 s) for ``--seconds``
with both CPUs busy (one spinning `benchmarks/busy.c` per core), stops it with SIGINT and
prints, per rate:
  - events/s: the receiver's `bpf_events` (events the BPF program submitted) per second;
  - ringbuf_full, stack_lost: events and stacks lost (the receiver's counters at shutdown);
  - reader CPU %: the receiver's reader thread (named `<id>-reader`), % of one core;
  - collector CPU %: the whole process, % of one core;
  - received / perf_samples: samples in the written .folded files over the kernel's count of
    perf samples (idle ones included, which the program drops: with both cores busy there are
    few), and received / bpf_events (1 when user space lost nothing it was handed);
  - peak fill: the fullest the ring buffer was seen before a drain (`ringbuf_peak_events`),
    as % of the events it holds.

Run as root after `make test`:
    .venv/bin/python benchmarks/ringbuf_rate.py [--seconds 20] [--rates 99 999 1999]
        [--unwind frame_pointers]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from collector.bpf.events import EVENT  # noqa: E402
from collector.bpf.ringbuf import HEADER_SIZE  # noqa: E402
from tests.support.pipelines import profiles_yaml  # noqa: E402

# `python -m` from ROOT: the code of this checkout, whatever the venv's editable install says.
COLLECTOR = [sys.executable, "-m", "collector.cli"]
TICK = os.sysconf("SC_CLK_TCK")
READER = "cpu-reader"


def ticks(stat_path: Path) -> int:
    fields = stat_path.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def reader_stat(pid: int) -> Path | None:
    for task in Path(f"/proc/{pid}/task").iterdir():
        if (task / "comm").read_text().strip() == READER:
            return task / "stat"
    return None


def totals(log: str, component: str) -> dict[str, int]:
    m = re.search(rf"totals component={re.escape(component)} (.*)", log)
    if not m:
        return {}
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


def folded_samples(out: Path) -> int:
    n = 0
    for f in out.glob("*.folded"):
        for line in f.read_text().splitlines():
            n += int(line.rsplit(" ", 1)[1])
    return n


def run_rate(freq: int, seconds: float, work: Path, unwind: str | None) -> dict[str, float]:
    out = work / f"profiles-{freq}"
    cfg = work / f"rate-{freq}.yaml"
    log_path = work / f"rate-{freq}.log"
    cpu: dict[str, object] = {"frequency": freq}
    if unwind:
        cpu["unwind"] = unwind
    pipeline = profiles_yaml(
        out, {"cpu": cpu}, exporters=("folded", "pprof"), interval=None, metrics_address=None
    )
    cfg.write_text(pipeline)
    with log_path.open("w") as log_f:
        proc = subprocess.Popen(
            [*COLLECTOR, "--config", str(cfg)], stderr=log_f, stdout=log_f, cwd=ROOT
        )
    deadline = time.monotonic() + 120
    while "started pipelines" not in log_path.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"collector did not start:\n{log_path.read_text()}")
        time.sleep(0.1)
    reader = reader_stat(proc.pid)
    proc_stat = Path(f"/proc/{proc.pid}/stat")
    t0, p0 = time.monotonic(), ticks(proc_stat)
    r0 = ticks(reader) if reader else 0
    time.sleep(seconds)
    wall = time.monotonic() - t0
    p1 = ticks(proc_stat)
    r1 = ticks(reader) if reader else 0
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(120)
    log = log_path.read_text()
    if rc != 0:
        raise SystemExit(f"collector exited {rc}:\n{log}")
    c = totals(log, "receivers/cpu")
    perf = c.get("perf_samples", 0)
    received = folded_samples(out)
    capacity = 256 * 4096 // (EVENT.size + HEADER_SIZE)
    return {
        "events_s": c.get("bpf_events", 0) / wall,
        "ringbuf_full": c.get("ringbuf_full", 0),
        "stack_lost": c.get("stack_lost", 0),
        "reader_cpu": 100.0 * (r1 - r0) / TICK / wall if reader else float("nan"),
        "cpu": 100.0 * (p1 - p0) / TICK / wall,
        "ratio": received / perf if perf else float("nan"),
        "ratio_bpf": received / c["bpf_events"] if c.get("bpf_events") else float("nan"),
        "fill_max": 100.0 * c.get("ringbuf_peak_events", 0) / capacity,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rates", type=int, nargs="+", default=[99, 999, 1999])
    ap.add_argument("--keep", type=Path, help="write configs, logs and profiles here")
    ap.add_argument(
        "--unwind",
        choices=["auto", "tables", "frame_pointers"],
        help="the cpu receiver's unwind setting (default: its own default)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (BPF)")
    with tempfile.TemporaryDirectory(prefix="ringbuf-rate-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        busy = work / "busy"
        subprocess.run(["gcc", "-O1", "-o", str(busy), str(HERE / "busy.c")], check=True)
        ncpu = os.cpu_count() or 1
        rows = []
        for freq in args.rates:
            spinners = [
                subprocess.Popen([str(busy), "100000"], stdout=subprocess.DEVNULL)
                for _ in range(ncpu)
            ]
            try:
                rows.append((freq, run_rate(freq, args.seconds, work, args.unwind)))
            finally:
                for s in spinners:
                    s.kill()
                    s.wait()
    unwind = args.unwind or "default"
    print(f"{ncpu} CPUs busy, {args.seconds:g} s per rate, ring buffer 256 pages, unwind {unwind}")
    head = (
        f"{'Hz':>5} {'events/s':>9} {'ringbuf_full':>12} {'stack_lost':>10} "
        f"{'reader CPU %':>12} {'collector CPU %':>15} {'received/perf':>13} "
        f"{'received/bpf':>12} {'peak fill %':>11}"
    )
    print(head)
    for freq, r in rows:
        print(
            f"{freq:>5} {r['events_s']:>9.0f} {r['ringbuf_full']:>12.0f} "
            f"{r['stack_lost']:>10.0f} {r['reader_cpu']:>12.1f} {r['cpu']:>15.1f} "
            f"{r['ratio']:>13.4f} {r['ratio_bpf']:>12.4f} {r['fill_max']:>11.1f}"
        )


if __name__ == "__main__":
    main()
