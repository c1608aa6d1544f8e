"""The collector's memory: idle RSS/PSS/USS, an exec storm's peak, and what comes back after.

``run``: the real CLI on the default pipeline (config/pipeline.yaml: cpu -> symbolize ->
folded + pprof + flamegraph), started twice AT THE SAME TIME, once with
``COLLECTOR_MALLOC_TUNING=0`` (glibc's defaults, no trims) and once as shipped (collector/
memory.py: two arenas, fixed mmap threshold, a trim every 10 s). Both profile the same machine,
so other engineers' load lands on both alike; the figures are side by side, never across runs.
RSS, PSS, USS and anonymous memory at 10, 30 and 60 s idle, then an exec storm (busy_host.py's:
two streams of ``gcc -O2 -c`` plus 3 ``/bin/true`` per compile), the peak during it (sampled
every 0.2 s, and VmHWM) and the figures ``--after`` seconds after it ends.

``where``: one collector on the same pipeline under tracemalloc (this script is its launcher,
``_child``): after ``--idle`` seconds, and after a storm and ``--after`` seconds, Python's
allocations by owning area (collector/proc, processors/symbolize, collector/unwind, ...),
and the resident set by mapped file (file-backed clean pages vs anonymous). tracemalloc itself
costs memory (its traces) and turns pymalloc's statistics off, so this mode explains, ``run``
measures; ``--pymalloc`` runs it without tracemalloc and reports pymalloc's arenas instead.

``imports``: what the default pipeline's modules cost in a fresh interpreter before any data,
step by step, and each large library imported alone.

Run as root after `make test`:
    .venv/bin/python benchmarks/memory.py run [--compiles 300 --after 60 --comm RE --pythonmalloc]
    .venv/bin/python benchmarks/memory.py where [--idle 30 --compiles 300 --after 60]
        [--depth 1] [--pymalloc]
    .venv/bin/python benchmarks/memory.py imports
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from procstat import cpu_seconds  # noqa: E402

from benchmarks.busy_storm import storm  # noqa: E402
from collector import memory  # noqa: E402

COLLECTOR = ROOT / ".venv" / "bin" / "collector"
PIPELINE = ROOT / "config" / "pipeline.yaml"
MARKS = (10.0, 30.0, 60.0)


def _mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Run:
    """One collector on the default pipeline with its own output folder and metrics port."""

    def __init__(
        self, work: Path, tag: str, env: dict[str, str], port: int, argv: list[str], comm: str
    ) -> None:
        self.tag = tag
        self.log = work / f"{tag}.log"
        extra = work / f"{tag}.yaml"
        text = f"service:\n  telemetry:\n    metrics:\n      address: 127.0.0.1:{port}\n"
        if comm:  # only these processes' samples are symbolized: a quiet host's caches
            text += f"receivers:\n  cpu:\n    comm: {json.dumps(comm)}\n"
        extra.write_text(text)
        env = dict(os.environ, PROFILES_DIR=str(work / f"{tag}-profiles"), **env)
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [*argv, "--config", str(PIPELINE), "--config", str(extra)],
                stdout=log,
                stderr=log,
                cwd=ROOT,
                env=env,
                preexec_fn=_default_sigint,
            )
        self.peak: dict[str, int] = {}

    def wait_started(self) -> None:
        deadline = time.monotonic() + 180
        while "started pipelines" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.tag} did not start:\n{self.log.read_text()}")
            time.sleep(0.1)

    def figures(self) -> dict[str, int]:
        r = memory.rollup(self.proc.pid)
        return {"rss": r["Rss"], "pss": r["Pss"], "uss": r["Uss"], "anon": r["Anonymous"]}

    def hwm(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(120)
        return self.log.read_text()


class Sampler(threading.Thread):
    """Keeps each run's largest figures while ``active`` (the storm's peak)."""

    def __init__(self, runs: list[Run]) -> None:
        super().__init__(daemon=True)
        self.runs = runs
        self.active = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            if not self.active.is_set():
                continue
            for r in self.runs:
                with contextlib.suppress(OSError, KeyError):
                    for k, v in r.figures().items():
                        r.peak[k] = max(r.peak.get(k, 0), v)


def _row(label: str, figs: dict[str, dict[str, int]]) -> str:
    cells = [
        f"{_mb(f['rss'])} / {_mb(f['pss'])} / {_mb(f['uss'])} / {_mb(f['anon'])}"
        for f in figs.values()
    ]
    return f"| {label} | " + " | ".join(cells) + " |"


def _trim_totals(log: str) -> str:
    for line in log.splitlines():
        if "totals component=memory" in line:
            return line.split("component=memory", 1)[1].strip().rstrip("'")
    return "no trims"


def cmd_run(args: argparse.Namespace, work: Path) -> None:
    variants = {"defaults": {memory.ENV_SWITCH: "0"}, "tuned": {memory.ENV_SWITCH: "1"}}
    if args.pythonmalloc:  # small objects from glibc too, which a trim can hand back
        variants["tuned+PYTHONMALLOC=malloc"] = {memory.ENV_SWITCH: "1", "PYTHONMALLOC": "malloc"}
    runs = [
        Run(work, tag, env, 18870 + i, [str(COLLECTOR)], args.comm)
        for i, (tag, env) in enumerate(variants.items())
    ]
    for r in runs:
        r.wait_started()
    t0 = time.monotonic()
    rows: list[str] = []
    for mark in MARKS:
        time.sleep(max(0.0, t0 + mark - time.monotonic()))
        rows.append(_row(f"idle {mark:.0f} s", {r.tag: r.figures() for r in runs}))
        print(rows[-1], flush=True)
    load_idle = os.getloadavg()[0]
    sampler = Sampler(runs)
    sampler.start()
    before = {r.tag: r.figures() for r in runs}
    sampler.active.set()
    seconds = storm(work, args.compiles)
    sampler.active.clear()
    rows.append(_row("storm peak (sampled)", {r.tag: r.peak for r in runs}))
    end = {r.tag: r.figures() for r in runs}
    rows.append(_row("storm end", end))
    load_storm = os.getloadavg()[0]
    time.sleep(args.after)
    after = {r.tag: r.figures() for r in runs}
    rows.append(_row(f"{args.after:.0f} s after", after))
    hwm = {r.tag: r.hwm() for r in runs}
    cpu = {r.tag: cpu_seconds(r.proc.pid) for r in runs}  # arenas shared: any lock cost shows
    sampler.done.set()
    logs = {r.tag: r.stop() for r in runs}
    what = f"comm {args.comm!r}" if args.comm else "the whole machine"
    print(
        f"\ndefault pipeline ({what}), both variants side by side; storm: {args.compiles} "
        f"compiles + {3 * args.compiles} /bin/true in {seconds:.1f} s; load average "
        f"{load_idle:.1f} idle, {load_storm:.1f} at the storm's end\n"
    )
    print("| MB: RSS / PSS / USS / anon | " + " | ".join(variants) + " |")
    print("|---|" + "---|" * len(variants))
    for row in rows:
        print(row)
    for tag in variants:
        back = (after[tag]["rss"] - before[tag]["rss"]) / 1024
        print(
            f"{tag}: VmHWM {_mb(hwm[tag])} MB; {args.after:.0f} s after the storm RSS is "
            f"{back:+.1f} MB from before it; CPU {cpu[tag]:.1f} s in all; trims: "
            f"{_trim_totals(logs[tag])}"
        )


def main() -> None:
    if sys.argv[1:2] == ["_child"]:
        from benchmarks.memory_where import child

        sys.exit(child(sys.argv[2:]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["run", "where", "imports"])
    ap.add_argument("--compiles", type=int, default=300)
    ap.add_argument("--after", type=float, default=60.0)
    ap.add_argument("--idle", type=float, default=30.0)
    ap.add_argument(
        "--pythonmalloc",
        action="store_true",
        help="run: a third collector with PYTHONMALLOC=malloc (no pymalloc arenas)",
    )
    ap.add_argument(
        "--depth",
        type=int,
        default=1,
        help="where: frames kept per allocation (more names the holders, costs more memory)",
    )
    ap.add_argument(
        "--pymalloc",
        action="store_true",
        help="where: no tracemalloc; report pymalloc's arenas instead of allocations by file",
    )
    ap.add_argument(
        "--comm",
        default="",
        help="cpu receiver comm regex, e.g. '^(cc1|as|gcc|collect2|ld|true|sh)$' to keep other "
        "programs on a shared machine out of the caches",
    )
    args = ap.parse_args()
    from benchmarks.memory_where import cmd_imports, cmd_where

    if os.geteuid() != 0 and args.what != "imports":
        sys.exit("run as root: the collector loads BPF programs")
    work = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    try:
        {"run": cmd_run, "where": cmd_where, "imports": cmd_imports}[args.what](args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
