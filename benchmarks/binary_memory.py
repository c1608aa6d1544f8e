"""The symbolizer's byte budget for loaded binaries (max_binary_memory), side by side.

Two collectors on the default pipeline start at the same moment and profile the same machine:
one with the shipped budget, one with ``max_binary_memory`` so large that only the count
(``max_binaries``) bounds the loaded binaries, as before the budget. Then busy_host.py's exec
storm; RSS/anonymous MB at idle, at the storm's peak and ``--after`` seconds after it, and
each collector's own figures from /metrics (bytes its binaries retain, evictions).

Run as root after `make test`:
    .venv/bin/python benchmarks/binary_memory.py [--compiles 300 --after 60 --comm RE]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from procstat import cpu_seconds  # noqa: E402

from benchmarks import memory as bench  # noqa: E402
from benchmarks.busy_storm import storm  # noqa: E402

UNBOUNDED = 1 << 40
BASE = bench.PIPELINE  # the shipped pipeline (bench.PIPELINE is repointed per variant)


def _pipeline(work: Path, tag: str, budget: int) -> Path:
    text = BASE.read_text().replace("symbolize: {}", f"symbolize:\n    max_binary_memory: {budget}")
    if f"max_binary_memory: {budget}\n" not in text:
        raise SystemExit("config/pipeline.yaml no longer has 'symbolize: {}'")
    path = work / f"{tag}-pipeline.yaml"
    path.write_text(text)
    return path


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if "binary_memory" in line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name.split("{")[0]] = float(value)
    return out


def _row(label: str, runs: list[bench.Run], figs: dict[str, dict[str, int]]) -> str:
    cells = [f"{figs[r.tag]['rss'] / 1024:.1f} / {figs[r.tag]['anon'] / 1024:.1f}" for r in runs]
    return f"| {label} | " + " | ".join(cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compiles", type=int, default=300)
    ap.add_argument("--idle", type=float, default=20.0)
    ap.add_argument("--after", type=float, default=60.0)
    ap.add_argument("--comm", default="")
    args = ap.parse_args()
    from processors.symbolize.config import SymbolizeConfig

    shipped = SymbolizeConfig().max_binary_memory
    variants = {"budget": shipped, "count only": UNBOUNDED}
    ports = {tag: 18890 + i for i, tag in enumerate(variants)}
    with tempfile.TemporaryDirectory(prefix="binary-memory-") as tmp:
        work = Path(tmp)
        runs = []
        for tag, budget in variants.items():
            bench.PIPELINE = _pipeline(work, tag.replace(" ", "_"), budget)  # read by Run
            runs.append(bench.Run(work, tag, {}, ports[tag], [str(bench.COLLECTOR)], args.comm))
        for r in runs:
            r.wait_started()
        time.sleep(args.idle)
        rows = [_row(f"idle {args.idle:.0f} s", runs, {r.tag: r.figures() for r in runs})]
        load_idle = os.getloadavg()[0]
        sampler = bench.Sampler(runs)
        sampler.start()
        sampler.active.set()
        seconds = storm(work, args.compiles)
        sampler.active.clear()
        rows.append(_row("storm peak (sampled)", runs, {r.tag: r.peak for r in runs}))
        load_storm = os.getloadavg()[0]
        time.sleep(args.after)
        rows.append(_row(f"{args.after:.0f} s after", runs, {r.tag: r.figures() for r in runs}))
        metrics = {r.tag: _metrics(ports[r.tag]) for r in runs}
        cpu = {r.tag: cpu_seconds(r.proc.pid) for r in runs}
        sampler.done.set()
        logs = {r.tag: r.stop() for r in runs}
    what = f"comm {args.comm!r}" if args.comm else "the whole machine"
    print(
        f"default pipeline ({what}); max_binary_memory {shipped} vs {UNBOUNDED}; storm "
        f"{args.compiles} compiles + {3 * args.compiles} /bin/true in {seconds:.1f} s; load "
        f"average {load_idle:.1f} idle, {load_storm:.1f} at the storm's end\n"
    )
    print("| MB: RSS / anon | " + " | ".join(variants) + " |")
    print("|---|" + "---|" * len(variants))
    print("\n".join(rows))
    for tag in variants:
        figs = ", ".join(f"{k}={v:.0f}" for k, v in sorted(metrics[tag].items()))
        print(f"{tag}: CPU {cpu[tag]:.1f} s; {figs}")
        # The collector's own periodic counter lines, to cross-check /metrics.
        for line in logs[tag].splitlines():
            if "binary_memory_evicted" in line or "error" in line.lower():
                print(f"  {tag} log: {line[:300]}")


if __name__ == "__main__":
    main()
