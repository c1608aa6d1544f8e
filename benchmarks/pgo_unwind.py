"""pgohot under the real collector with each unwind mode, side by side: how many samples are
under main.hotLoop and how many of main.digest's (a frameless leaf) name hotLoop as caller.

    .venv/bin/python benchmarks/pgo_unwind.py [--version 1.21.13] [--rounds 2]

Needs root, BPF and the Go toolchains of tests/support/gotoolchains.py; the modes run in
turn within each round; each row prints the load average it ran at.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.collector.pgo.test_pgo_bpf import _go_functions  # noqa: E402
from tests.support import gotoolchains as gt  # noqa: E402
from tests.support.collector_run import start_collector  # noqa: E402
from tests.support.pipelines import profiles_yaml  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", default=gt.OLD)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    gt.require(args.version)
    binary = gt.workload("pgohot", args.version, stripped=False)
    tmp = Path(tempfile.mkdtemp(prefix="pgo-unwind-"))
    for rnd in range(args.rounds):
        for mode in ("auto", "tables", "frame_pointers"):
            out, cfg = tmp / f"{mode}-{rnd}", tmp / f"{mode}-{rnd}.yaml"
            cpu = {"frequency": 199, "comm": "^pgohot$", "unwind": mode}
            cfg.write_text(profiles_yaml(out, {"cpu": cpu}, exporters=("pprof",), interval=2))
            col = start_collector(cfg)
            try:
                subprocess.run([str(binary), "-seconds", "6"], capture_output=True, check=True)
            finally:
                col.stop()
            leaves, _funcs, callers = _go_functions(out)
            total = sum(leaves.values())
            in_digest = sum(  # coldPath calls digest too, rarely
                n
                for (leaf, c), n in callers.items()
                if leaf == "main.digest" and c != "main.coldPath"
            )
            under = callers[("*", "main.hotLoop")] / max(1, total)
            edge = callers[("main.digest", "main.hotLoop")] / max(1, in_digest)
            print(
                f"{args.version} round {rnd} {mode:14s} samples {total} under hotLoop {under:.1%} "
                f"digest<-hotLoop {edge:.1%} load {os.getloadavg()[0]:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
