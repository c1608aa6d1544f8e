"""What one binary's symbol table costs, and what the per-binary budgets cap, in one run.

For real binaries on this machine (libc's .dynsym, the Go toolchain's .symtab, libLLVM's
.dynsym when installed) and synthetic ELF files with 1 and 2 million function symbols
(tests/support/hostile_elf.synthetic), it prints: symbols kept, load seconds, the transient
Python heap peak (tracemalloc) and the table's resident size, under the defaults of the
symbolize processor and, beside them, without budgets. The hostile copies with a claimed
1 TiB .symtab are loaded too: their cost is the point.

    .venv/bin/python benchmarks/symbol_budgets.py [--sizes 1000000,2000000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collector.elf import ElfReader, Limits, LoadedSymbols, load_function_symbols
from processors.symbolize.config import SymbolizeConfig
from tests.support import hostile_elf
from tests.support.workloads import build

_D = SymbolizeConfig()
DEFAULTS = Limits(_D.binary_max_bytes, _D.binary_max_symbols, _D.binary_max_seconds)
UNBOUNDED = Limits(1 << 40, (1 << 32) - 1, 1e9)


def _load(path: Path, limits: Limits) -> tuple[ElfReader, LoadedSymbols, float]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        t0 = time.perf_counter()
        elf = ElfReader(fd, limits)
        loaded = load_function_symbols(elf)
        return elf, loaded, time.perf_counter() - t0
    finally:
        os.close(fd)


def measure(path: Path, limits: Limits) -> tuple[int, float, int, int, int, str]:
    """Seconds from an untraced load (tracemalloc slows allocation-heavy code ~8x); the
    heap peak from a second, traced load with the time budget lifted so it reads the same."""
    elf, loaded, seconds = _load(path, limits)
    traced = Limits(limits.max_read_bytes, len(loaded.table) + 1, 1e9)
    tracemalloc.start()
    _load(path, traced if loaded.truncated else limits)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    why = loaded.truncated or ("; ".join(elf.problems)[:60] or "-")
    return len(loaded.table), seconds, peak, loaded.table.nbytes(), elf.bytes_read, why


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000,2000000")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="symbudget-"))
    files: list[tuple[str, Path]] = [("libc.so.6", Path("/usr/lib/x86_64-linux-gnu/libc.so.6"))]
    try:
        import go  # type: ignore[import-not-found]

        files.append(("go (Go toolchain)", Path(go.__file__).parent / "bin" / "go"))
    except ImportError:
        pass
    llvm = Path("/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1")
    if llvm.exists():
        files.append(("libLLVM-15.so.1", llvm))
    for n in (int(s) for s in args.sizes.split(",")):
        hostile_elf.synthetic(tmp / f"syn{n}", n)
        files.append((f"synthetic {n:,} symbols", tmp / f"syn{n}"))
    exported = build("cpu_shares", ("-rdynamic",))
    files.append(("1 TiB .symtab claim", hostile_elf.make(exported, tmp / "t", "symtab1t")))
    print(
        f"{'binary':28} {'budgets':9} {'kept':>9} {'s':>6} {'peak MB':>8} {'table MB':>8}"
        f" {'read MB':>8}  truncated/problems"
    )
    for name, path in files:
        for label, limits in (("defaults", DEFAULTS), ("none", UNBOUNDED)):
            kept, s, peak, table, read, why = measure(path, limits)
            print(
                f"{name:28} {label:9} {kept:9d} {s:6.2f} {peak / 2**20:8.1f} "
                f"{table / 2**20:8.1f} {read / 2**20:8.1f}  {why}"
            )
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()


if __name__ == "__main__":
    main()
