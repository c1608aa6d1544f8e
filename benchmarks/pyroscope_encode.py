"""What the pyroscope exporter costs per window, beside the pprof file exporter's encoding.

The same realistic window as benchmarks/otlp_size.py (``--samples`` 99 Hz samples, hundreds
of distinct stacks 8-40 frames deep, kernel + native frames, inlining) spread over N
processes of K executables (processes of one executable are one service, so one series).
"shared": every process samples from all the stacks, the costly case, as each series' tables
then hold nearly every frame of the window; "own": each process has its own stacks, as
different programs do. Encoded:
  - as the pprof exporter does: the whole window, ``encode_pprof`` (gzip level 6);
  - as the pyroscope exporter does (push): per series a restricted pprof with compact tables,
    gzipped, packed into PushRequests.
Both in this process, alternating, CPU time medians.

    .venv/bin/python benchmarks/pyroscope_encode.py [--samples 10000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from otlp_size import cpu_ms, make_samples  # the same window generator and timer

from collector.encoding import encode_pprof
from collector.model import ProcessInfo, ProfileBuilder, ProfileSet, cpu_profile_type
from exporters.pyroscope.config import PyroscopeConfig
from exporters.pyroscope.encode import PyroscopeEncoder


def window(samples: int, stacks: int, processes: int, executables: int, own: bool) -> ProfileSet:
    rnd = random.Random(3)
    procs = [
        ProcessInfo(2000 + i, f"svc{i % executables}", f"/usr/bin/svc{i % executables}")
        for i in range(processes)
    ]
    b = ProfileBuilder(cpu_profile_type(99))
    index: dict[object, int] = {}
    for s in make_samples(samples, stacks):
        if own:  # the stack decides the process: no two processes share a stack
            s.process = procs[index.setdefault(s.stack, len(index)) % processes]
        else:
            s.process = procs[rnd.randrange(processes)]
        b.add(s)
    return b.build()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--stacks", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    encoder = PyroscopeEncoder(PyroscopeConfig())
    print(f"{a.samples} samples, {a.stacks} distinct stacks per window; CPU ms, medians")
    print()
    print("| stacks | processes | series | pprof file ms | pyroscope push ms | ratio "
          "| pprof file KB | push bodies KB | requests |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for n, k, own in ((6, 6, False), (50, 5, False), (50, 50, False), (50, 50, True)):
        ps = window(a.samples, a.stacks, n, k, own)
        file_ms = push_ms = 0.0
        for _ in range(2):  # alternate, so drift on a busy machine hits both alike
            file_ms += cpu_ms(lambda: encode_pprof(ps), a.rounds) / 2  # noqa: B023
            push_ms += cpu_ms(lambda: encoder.encode(ps), a.rounds) / 2  # noqa: B023
        enc = encoder.encode(ps)
        body = sum(len(r.body) for r in enc.requests)
        print(
            f"| {'own' if own else 'shared'} | {n} | {enc.profiles} | {file_ms:.1f} "
            f"| {push_ms:.1f} | {push_ms / file_ms:.2f}x "
            f"| {len(encode_pprof(ps)) / 1e3:.0f} | {body / 1e3:.0f} | {len(enc.requests)} |"
        )


if __name__ == "__main__":
    main()
