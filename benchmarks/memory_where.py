"""Helpers of benchmarks/memory.py: ``where`` (the collector under tracemalloc, or with
pymalloc's statistics, and its report) and ``imports`` (what the default pipeline's modules
cost in a fresh interpreter). Run them through benchmarks/memory.py."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.busy_storm import storm
from benchmarks.memory import PIPELINE, ROOT, Run, _mb
from collector import memory

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


def _pymalloc() -> dict[str, int]:
    """pymalloc's arena figures from sys._debugmallocstats (only without tracemalloc, which
    replaces the allocator it reports on); it writes to fd 2, captured in a file."""
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.rpartition("=")
        value = value.strip().replace(",", "")
        if sep and key.startswith("#") and value.isdigit():
            out[key.strip("# ").strip()] = int(value)
    return out


def _dump(path: Path) -> None:
    import tracemalloc

    report: dict[str, Any] = {
        "rollup": memory.rollup(),
        "malloc": memory.malloc_stats(),
        "regions": [vars(r) for r in memory.regions()[:15]],
    }
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot()
        areas: Counter[str] = Counter()
        files: Counter[str] = Counter()
        for stat in snap.statistics("filename"):
            fn = stat.traceback[0].filename
            areas[_area(fn)] += stat.size
            files[fn.split(str(ROOT) + "/", 1)[-1]] += stat.size
        report["traced"] = sum(areas.values())
        report["tracemalloc_overhead"] = tracemalloc.get_tracemalloc_memory()
        report["areas"] = areas.most_common()
        report["files"] = files.most_common(25)
        report["lines"] = [(_site(s.traceback[0]), s.size) for s in snap.statistics("lineno")[:15]]
        if tracemalloc.get_traceback_limit() > 1:  # who holds the largest sites' blocks
            report["paths"] = [
                (" -> ".join(_site(f) for f in s.traceback if str(ROOT) in f.filename), s.size)
                for s in snap.statistics("traceback")[:12]
            ]
    else:
        report["pymalloc"] = _pymalloc()
    path.write_text(json.dumps(report))


def child(argv: list[str]) -> int:
    """Run the CLI (with tracemalloc unless ``--pymalloc``); write a report whenever the file
    ``<out>.req`` appears."""
    import tracemalloc

    depth = int(argv[0].removeprefix("trace")) if argv[0].startswith("trace") else 0
    out = Path(argv[1])
    if depth:
        tracemalloc.start(depth)
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

    return main(argv[2:])


def _report(title: str, path: Path) -> None:
    rep = json.loads(path.read_text())
    roll = rep["rollup"]
    print(
        f"\n== {title}: RSS {_mb(roll['Rss'])} MB (anon {_mb(roll['Anonymous'])}, PSS "
        f"{_mb(roll['Pss'])}, USS {_mb(roll['Uss'])})"
    )
    mal = rep["malloc"] or {}
    print("glibc malloc (MB): " + ", ".join(f"{k} {_mb(v)}" for k, v in mal.items()))
    if "pymalloc" in rep:
        pm = rep["pymalloc"]
        arenas = pm.get("arenas allocated current", 0)
        used = pm.get("bytes in allocated blocks", 0)
        print(
            f"pymalloc: {arenas} arenas of 1 MiB = {arenas} MiB mapped, {used / 2**20:.1f} MiB in "
            f"live objects, {pm.get('bytes in available blocks', 0) / 2**20:.1f} MiB in free "
            f"blocks of used pools; {pm.get('arenas reclaimed', 0)} arenas handed back so far "
            f"(high-water mark {pm.get('arenas highwater mark', 0)})"
        )
    else:
        print(
            f"Python objects traced {rep['traced'] / 2**20:.1f} MB (tracemalloc's own traces "
            f"{rep['tracemalloc_overhead'] / 2**20:.1f} MB)"
        )
        print("Python allocations by area (MB):")
        for area, size in rep["areas"][:14]:
            print(f"  {size / 2**20:7.2f}  {area}")
        print("largest files (MB):")
        for fn, size in rep["files"][:12]:
            print(f"  {size / 2**20:7.2f}  {fn}")
        print("largest allocation sites (MB; the line that allocated, tracemalloc depth 1):")
        for where, size in rep["lines"][:10]:
            print(f"  {size / 2**20:7.2f}  {where}")
        if rep.get("paths"):
            print("largest allocation paths (MB; outermost caller first, project frames):")
            for where, size in rep["paths"]:
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
    mode = "pymalloc" if args.pymalloc else f"trace{args.depth}"
    argv = [sys.executable, str(ROOT / "benchmarks" / "memory.py"), "_child", mode, str(out)]
    port = 18879 if memory.enabled() else 18878  # both variants may run at once
    run = Run(work, "where", {}, port, argv, args.comm)
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


# ---- imports: what the default pipeline's modules cost before any data -------------------

_ROLL = """
import json, sys
def roll():  # no import of the collector's own helper: it would count itself
    d = {}
    for line in open("/proc/self/smaps_rollup"):
        k, _, v = line.partition(":")
        if k in ("Rss", "Anonymous"):
            d[k] = int(v.split()[0])
    return d["Rss"], d["Anonymous"], len(sys.modules)
"""
_STEPS = (
    _ROLL
    + """
out = [("python", *roll())]
import collector.cli
out.append(("collector.cli", *roll()))
from collector.config.load import load_config
from collector.registry import Registry
cfg = load_config([sys.argv[1]], Registry())
out.append(("+ the default pipeline's factories", *roll()))
import collector.pipeline, collector.selfmetrics
out.append(("+ service and telemetry server", *roll()))
print(json.dumps(out))
"""
)
_ALONE = (
    _ROLL
    + """
import asyncio
a = roll()
__import__(sys.argv[1])
b = roll()
print(json.dumps([y - x for x, y in zip(a, b)]))
"""
)
LIBS = ("aiohttp", "prometheus_client", "pydantic", "uvloop", "symbolic", "yaml",
        "google.protobuf.descriptor_pb2", "grpc")  # fmt: skip


def _child_json(code: str, arg: str) -> Any:
    res = subprocess.run(
        [sys.executable, "-c", code, arg], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return json.loads(res.stdout.splitlines()[-1])


def cmd_imports(args: argparse.Namespace, work: Path) -> None:
    print("| step (fresh interpreter) | RSS MB | anon MB | modules |\n|---|---|---|---|")
    for name, rss, anon, mods in _child_json(_STEPS, str(PIPELINE)):
        print(f"| {name} | {_mb(rss)} | {_mb(anon)} | {mods} |")
    print("\n| library, imported alone after asyncio | RSS MB | anon MB | modules |")
    print("|---|---|---|---|")
    for lib in LIBS:
        rss, anon, mods = _child_json(_ALONE, lib)
        print(f"| {lib} | +{_mb(rss)} | +{_mb(anon)} | +{mods} |")
