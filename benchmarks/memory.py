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
measures.

Run as root after `make test`:
    .venv/bin/python benchmarks/memory.py run [--compiles 300 --after 60 --comm REGEX]
    .venv/bin/python benchmarks/memory.py where [--idle 30 --compiles 300 --after 60]
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
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchmarks.busy_host import storm  # noqa: E402
from collector import memory  # noqa: E402

COLLECTOR = ROOT / ".venv" / "bin" / "collector"
PIPELINE = ROOT / "config" / "pipeline.yaml"
MARKS = (10.0, 30.0, 60.0)
AREAS = (  # longest prefix first: the owner named in the write-up
    "collector/proc",
    "collector/unwind",
    "collector/elf",
    "collector/dwarf",
    "collector/gosym",
    "collector/model",
    "collector/encoding",
    "collector/bpf",
    "processors/symbolize",
    "receivers/",
    "exporters/",
    "collector/",
)


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
            f"{back:+.1f} MB from before it; trims: {_trim_totals(logs[tag])}"
        )


# ---- where: the child under tracemalloc, and its report ----------------------------------


def _area(filename: str) -> str:
    rel = filename.split(str(ROOT) + "/", 1)[-1]
    for prefix in AREAS:
        if rel.startswith(prefix):
            return prefix.rstrip("/")
    if "site-packages/" in filename:
        return "lib:" + filename.split("site-packages/", 1)[1].split("/", 1)[0]
    return "python (imports, stdlib)"


def _site(frame: Any) -> str:
    return f"{frame.filename.split(str(ROOT) + '/', 1)[-1]}:{frame.lineno}"


def _dump(path: Path) -> None:
    import tracemalloc

    snap = tracemalloc.take_snapshot()
    areas: Counter[str] = Counter()
    files: Counter[str] = Counter()
    for stat in snap.statistics("filename"):
        fn = stat.traceback[0].filename
        areas[_area(fn)] += stat.size
        files[fn.split(str(ROOT) + "/", 1)[-1]] += stat.size
    report = {
        "rollup": memory.rollup(),
        "malloc": memory.malloc_stats(),
        "regions": [vars(r) for r in memory.regions()[:15]],
        "traced": sum(areas.values()),
        "tracemalloc_overhead": tracemalloc.get_tracemalloc_memory(),
        "areas": areas.most_common(),
        "files": files.most_common(25),
        "lines": [(_site(st.traceback[0]), st.size) for st in snap.statistics("lineno")[:15]],
    }
    path.write_text(json.dumps(report))


def child(argv: list[str]) -> int:
    """Run the CLI with tracemalloc; write a report whenever the file ``<out>.req`` appears."""
    import tracemalloc

    out = Path(argv[0])
    tracemalloc.start(1)
    req = out.with_suffix(".req")

    def watch() -> None:
        n = 0
        while True:
            time.sleep(0.2)
            if req.exists():
                req.unlink()
                n += 1
                _dump(out.with_suffix(f".{n}.json"))

    threading.Thread(target=watch, daemon=True).start()
    from collector.cli import main

    return main(argv[1:])


def _report(title: str, path: Path) -> None:
    rep = json.loads(path.read_text())
    roll = rep["rollup"]
    print(
        f"\n== {title}: RSS {_mb(roll['Rss'])} MB (anon {_mb(roll['Anonymous'])}, PSS "
        f"{_mb(roll['Pss'])}, USS {_mb(roll['Uss'])}); Python objects traced "
        f"{rep['traced'] / 2**20:.1f} MB (tracemalloc's own traces "
        f"{rep['tracemalloc_overhead'] / 2**20:.1f} MB)"
    )
    mal = rep["malloc"] or {}
    print("glibc malloc (MB): " + ", ".join(f"{k} {_mb(v)}" for k, v in mal.items()))
    print("Python allocations by area (MB):")
    for area, size in rep["areas"][:14]:
        print(f"  {size / 2**20:7.2f}  {area}")
    print("largest files (MB):")
    for fn, size in rep["files"][:12]:
        print(f"  {size / 2**20:7.2f}  {fn}")
    print("largest allocation sites (MB; the line that allocated, tracemalloc depth 1):")
    for where, size in rep["lines"][:10]:
        print(f"  {size / 2**20:7.2f}  {where}")
    print("resident set by mapping (MB: rss, pss, anon, file-backed clean):")
    for r in rep["regions"][:12]:
        file_kb = r["rss"] - r["anon"]
        print(
            f"  {_mb(r['rss']):>7} {_mb(r['pss']):>7} {_mb(r['anon']):>7} {_mb(file_kb):>7}  "
            f"{r['name']}"
        )


def cmd_where(args: argparse.Namespace, work: Path) -> None:
    out = work / "where"
    argv = [sys.executable, str(Path(__file__).resolve()), "_child", str(out)]
    run = Run(work, "where", {}, 18879, argv, args.comm)
    run.wait_started()

    def request(n: int) -> Path:
        out.with_suffix(".req").touch()
        path = out.with_suffix(f".{n}.json")
        while not path.exists():
            time.sleep(0.2)
        time.sleep(0.5)  # written in one call; let it land
        return path

    time.sleep(args.idle)
    _report(f"idle {args.idle:.0f} s", request(1))
    seconds = storm(work, args.compiles)
    _report(f"right after a {seconds:.0f} s storm of {args.compiles} compiles", request(2))
    time.sleep(args.after)
    _report(f"{args.after:.0f} s after the storm", request(3))
    run.stop()
    print(f"\nload average {os.getloadavg()[0]:.1f}")


def main() -> None:
    if sys.argv[1:2] == ["_child"]:
        sys.exit(child(sys.argv[2:]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["run", "where"])
    ap.add_argument("--compiles", type=int, default=300)
    ap.add_argument("--after", type=float, default=60.0)
    ap.add_argument("--idle", type=float, default=30.0)
    ap.add_argument(
        "--comm",
        default="",
        help="cpu receiver comm regex, e.g. '^(cc1|as|gcc|collect2|ld|true|sh)$' to keep other "
        "programs on a shared machine out of the caches",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the collector loads BPF programs")
    work = Path(tempfile.mkdtemp(prefix="memory-bench-"))
    try:
        (cmd_run if args.what == "run" else cmd_where)(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
