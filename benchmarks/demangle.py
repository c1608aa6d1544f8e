"""Rust v0 demangling cost: microseconds per name, ours beside GNU c++filt, in one run.

Names: the hand-checked v0 cases of tests/processors/symbolize/test_demangle.py (typical
symbols), and the two hostile inputs whose cost the tests used to bound with a stopwatch:
a name whose backrefs double the text 60 times (bounded by the step budget) and a name
nested 5000 deep (bounded by the depth limit). c++filt (binutils' libiberty, C) reads the
same names from one pipe, so its process start is spread over every name.

    .venv/bin/python benchmarks/demangle.py [--rounds 5] [--reps 200]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processors.symbolize.rust_v0 import demangle_v0
from tests.processors.symbolize.test_demangle import CASES, _b62_backref


def exponential_backrefs() -> str:
    body = "INvCs_1c1fu"
    prev = len(body) - 1
    for _ in range(60):
        here = len(body)
        body += "T" + _b62_backref(prev) * 2 + "E"
        prev = here
    return "_R" + body + "E"


def deep_nesting() -> str:
    return "_R" + "Nv" * 5000 + "C1c" + "1a" * 5000


def us_per_call(names: list[str], reps: int, rounds: int) -> float:
    per_round = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            for n in names:
                demangle_v0(n)
        per_round.append((time.perf_counter() - t0) / (reps * len(names)))
    return statistics.median(per_round) * 1e6


def cxxfilt_us_per_name(names: list[str], reps: int, rounds: int) -> float | None:
    exe = shutil.which("c++filt")
    if exe is None:
        return None
    text = ("\n".join(names) + "\n") * reps
    per_round = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        subprocess.run([exe], input=text, capture_output=True, text=True, check=True)
        per_round.append((time.perf_counter() - t0) / (reps * len(names)))
    return statistics.median(per_round) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=200, help="passes over the typical names")
    a = ap.parse_args()
    typical = [m for m, _ in CASES if m.startswith("_R")]
    ours = us_per_call(typical, a.reps, a.rounds)
    theirs = cxxfilt_us_per_name(typical, a.reps, a.rounds)
    print(f"typical v0 names ({len(typical)}), median of {a.rounds} rounds:")
    print(f"  ours (rust_v0.py)  {ours:8.1f} us/name")
    if theirs is None:
        print("  c++filt            not installed (binutils)")
    else:
        print(f"  c++filt (C, pipe)  {theirs:8.1f} us/name   ours/c++filt = {ours / theirs:.1f}x")
    for label, name in (
        ("exponential backrefs (2^60 if expanded)", exponential_backrefs()),
        ("nesting 5000 deep", deep_nesting()),
    ):
        assert demangle_v0(name) is None, label  # refused, as the tests check
        us = us_per_call([name], max(a.reps // 20, 1), a.rounds)
        print(f"{label}: refused after {us:,.0f} us ({us / ours:.0f}x a typical name)")


if __name__ == "__main__":
    main()
