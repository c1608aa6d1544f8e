"""file:line cost per binary: symbolic's SymCache (today's path) vs the pyelftools path it
replaced, side by side in one run, each measurement in a fresh child process (peak RSS).

Binaries: libc's debug file from libc6-dbg, pyenv's libpython3.11 (-O3 -g, its own DWARF), a
generated -O2 -g binary with --functions functions (the "large binary" with DWARF), and
libLLVM-15 (117 MB, no DWARF: symbolic names only) when installed. For each:

- symbolic, first use: read the object (through the hardened reader's pread), build the
  SymCache, write it to the on-disk cache; then cached: a new process loads it from the disk
  cache; both then look up --lookups function addresses spread over the binary;
- pyelftools (processors/symbolize/dwarf.py as of commit 971b834, loaded from git): the same
  lookups, given at most --pyelftools-seconds.

    .venv/bin/python benchmarks/symbolize_lines.py [--functions 20000] [--lookups 200] \
        [--extra ~/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/bin/cargo]

``--decl`` measures what decl lines (DW_AT_decl_line, collector/dwarf) add instead: the real
``Binary.lines_at`` for the same --lookups functions with ``decl_lines`` off and on, each in
a fresh child with the SymCache already on disk (so both pay the same SymCache load), in
alternating order for --rounds rounds; it prints the medians and the on/off ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collector.elf import ElfReader, Limits, load_function_symbols  # noqa: E402
from collector.elf.debuglink import build_id_path  # noqa: E402
from processors.symbolize.lines import (  # noqa: E402
    LineTable,
    build_symcache,
    image_base,
    object_refusal,
)
from processors.symbolize.symcache_store import SymCacheStore, cache_key  # noqa: E402

OLD_COMMIT = "971b834"  # last commit with the pyelftools DWARF path
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LIBPYTHON = "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0"
LLVM = "/usr/lib/x86_64-linux-gnu/libLLVM-15.so.1"
BIG = 1 << 30


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _addresses(elf: ElfReader, n: int) -> list[int]:
    table = load_function_symbols(elf).table
    step = max(1, len(table) // n)
    return [table.starts[i] + 4 for i in range(0, len(table), step)][:n]


def child_symbolic(path: str, cache_dir: str, n: int) -> dict[str, float]:
    rss0 = _rss_mb()
    fd = os.open(path, os.O_RDONLY)
    elf = ElfReader(fd, Limits(max_read_bytes=BIG))
    refusal = object_refusal(elf, BIG)
    if refusal:
        return {"error": refusal}  # type: ignore[dict-item]
    store = SymCacheStore(cache_dir, BIG)
    st = os.fstat(fd)
    key = cache_key(elf.build_id(), (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    t0 = time.perf_counter()
    cache, size, _corrupt = store.load(key)
    hit = cache is not None
    if cache is None:
        cache, blob = build_symcache(ElfReader(fd, Limits(max_read_bytes=BIG)))
        store.save(key, blob)
        size = len(blob)
    prep = time.perf_counter() - t0
    table = LineTable(cache, image_base(elf), size)
    addrs = _addresses(elf, n)
    t0 = time.perf_counter()
    found = sum(1 for a in addrs if any(f[2] for f in table.lookup(a)))
    look = time.perf_counter() - t0
    return {
        "disk_hit": hit,
        "prepare_s": prep,
        "lookups": len(addrs),
        "with_line": found,
        "lookup_us": look / max(1, len(addrs)) * 1e6,
        "symcache_mb": size / 1e6,
        "rss_delta_mb": _rss_mb() - rss0,
    }


def _old_dwarf_module():  # type: ignore[no-untyped-def]
    src = subprocess.run(
        ["git", "show", f"{OLD_COMMIT}:processors/symbolize/dwarf.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    tmp = Path(tempfile.mkdtemp()) / "old_dwarf.py"
    tmp.write_text(src)
    spec = importlib.util.spec_from_file_location("old_dwarf", tmp)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def child_pyelftools(path: str, n: int, max_seconds: float) -> dict[str, float]:
    old = _old_dwarf_module()
    rss0 = _rss_mb()
    fd = os.open(path, os.O_RDONLY)
    elf = ElfReader(fd, Limits(max_read_bytes=BIG))
    addrs = _addresses(elf, n)
    t0 = time.perf_counter()
    d = old.DwarfLines(os.dup(fd), inline=False, max_bytes=BIG // 4)
    first = None
    done = found = 0
    for a in addrs:
        if d.lookup(a) is not None:
            found += 1
        done += 1
        if first is None:
            first = time.perf_counter() - t0
        if time.perf_counter() - t0 > max_seconds:
            break
    total = time.perf_counter() - t0
    return {
        "first_lookup_s": first or 0.0,
        "lookups": done,
        "of": len(addrs),
        "with_line": found,
        "total_s": total,
        "rss_delta_mb": _rss_mb() - rss0,
    }


def child_binary(path: str, cache_dir: str, n: int, decl: bool) -> dict[str, float]:
    """The symbolizer's own per-binary path: Binary.lines_at for n function addresses."""
    from collector.proc import PinnedFile
    from processors.symbolize.binary import Binary
    from processors.symbolize.config import SymbolizeConfig

    counts: dict[str, int] = {}

    def count(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    fd = os.open(path, os.O_RDONLY)
    elf = ElfReader(fd, Limits(max_read_bytes=BIG))
    offsets = [elf.vaddr_to_file_offset(a) for a in _addresses(elf, n)]
    config = SymbolizeConfig(
        decl_lines=decl, symcache_dir=cache_dir, dwarf_max_bytes=BIG, decl_max_seconds=600
    )
    store = SymCacheStore(cache_dir, BIG)
    pinned = PinnedFile(os.dup(fd), os.fstat(fd), path)
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    b = Binary(pinned, {}, config, count=count, store=store)
    starts = [ln[-1].function.start_line for off in offsets if off and (ln := b.lines_at(off))]
    total = time.perf_counter() - t0
    return {
        "seconds": total,
        "rss_delta_mb": _rss_mb() - rss0,
        "lookups": len(offsets),
        "with_start_line": sum(1 for x in starts if x),
        "starts": starts,  # type: ignore[dict-item]
        "decl_units": counts.get("decl_units", 0),
        "disk_hit": counts.get("symcache_disk_hits", 0),
    }


def decl_main(targets: dict[str, str], lookups: int, rounds: int) -> None:
    import statistics

    cache_dir = tempfile.mkdtemp(prefix="symcache-decl-")
    print(f"load average {os.getloadavg()[0]:.1f} at start")
    for name, path in targets.items():
        if not path or not os.path.exists(path):
            print(f"{name}: not on this machine")
            continue
        _child("binary", path, cache_dir, "1")  # builds the SymCache once: both read it
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for r in range(rounds):
            for decl in (False, True) if r % 2 == 0 else (True, False):
                runs[decl].append(_child("binary", path, cache_dir, "1" if decl else "0"))
        before, after = (runs[d][0]["starts"] for d in (False, True))
        changed = sum(a != b for a, b in zip(before, after, strict=True))  # type: ignore[call-overload]
        off, on = (
            {k: statistics.median(x[k] for x in runs[d]) for k in runs[d][0] if k != "starts"}
            for d in (False, True)
        )
        print(
            f"{name}: {lookups} functions; decl off {off['seconds']:.3f} s "
            f"(+{off['rss_delta_mb']:.0f} MB), on {on['seconds']:.3f} s "
            f"(+{on['rss_delta_mb']:.0f} MB), on/off {on['seconds'] / off['seconds']:.1f}x, "
            f"{on['decl_units']:.0f} units walked, {changed} of {on['with_start_line']:.0f} "
            f"start lines changed (of {on['lookups']:.0f} lookups; median of {rounds})"
        )
    print(f"load average {os.getloadavg()[0]:.1f} at end")


def _child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.splitlines()[-1])


def _big_binary(functions: int) -> str:
    out = Path(tempfile.gettempdir()) / f"symbolize_lines_big_{functions}"
    if out.exists():
        return str(out)
    src = out.with_suffix(".c")
    body = [
        f"int f{i}(int x) {{ int s = x; for (int j = 0; j < x; j++) s += j * {i}; return s; }}"
        for i in range(functions)
    ]
    body.append("int main(int c, char **v) { return f0(c); }")
    src.write_text("\n".join(body) + "\n")
    subprocess.run(["gcc", "-O2", "-g", str(src), "-o", str(out)], check=True)
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--functions", type=int, default=20000)
    ap.add_argument("--lookups", type=int, default=200)
    ap.add_argument("--pyelftools-seconds", type=float, default=60.0)
    ap.add_argument("--extra", nargs="*", default=[], help="more binaries (e.g. a Rust cargo)")
    ap.add_argument("--decl", action="store_true", help="decl lines off vs on (see above)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", nargs="*")
    args = ap.parse_args()
    if args.child:
        kind, path, *rest = args.child
        if kind == "symbolic":
            res = child_symbolic(path, rest[0], args.lookups)
        elif kind == "binary":
            res = child_binary(path, rest[0], args.lookups, rest[1] == "1")
        else:
            res = child_pyelftools(path, args.lookups, args.pyelftools_seconds)
        print(json.dumps(res))
        return
    out = subprocess.run(["readelf", "-n", LIBC], capture_output=True, text=True).stdout
    libc_id = next((ln.split()[-1] for ln in out.splitlines() if "Build ID" in ln), "")
    targets = {
        "libc (libc6-dbg debug file)": build_id_path(libc_id) or "",
        "libpython3.11 (-O3 -g)": LIBPYTHON,
    }
    if args.functions:
        targets[f"generated, {args.functions} functions (-O2 -g)"] = _big_binary(args.functions)
    targets["libLLVM-15 (no DWARF)"] = LLVM
    for path in args.extra:
        targets[os.path.basename(path)] = path
    if args.decl:  # the symbolizer's path: libc itself, its debug file found by build id
        targets["libc (libc6-dbg debug file)"] = LIBC
        decl_main(targets, args.lookups, args.rounds)
        return
    cache_dir = tempfile.mkdtemp(prefix="symcache-bench-")
    for name, path in targets.items():
        if not path or not os.path.exists(path):
            print(f"{name}: not on this machine")
            continue
        size = os.path.getsize(path) / 1e6
        first = _child("symbolic", path, cache_dir)
        cached = _child("symbolic", path, cache_dir)
        print(f"{name}: {path} ({size:.1f} MB)")
        print(f"  symbolic first use : {json.dumps(first)}")
        print(f"  symbolic cached    : {json.dumps(cached)}")
        if "error" in first or "no DWARF" in name:
            continue
        old = _child("pyelftools", path)
        print(f"  pyelftools         : {json.dumps(old)}")
        if old["lookups"]:
            per_old = old["total_s"] / old["lookups"]
            per_new = (first["prepare_s"] + first["lookup_us"] * 1e-6 * first["lookups"]) / max(
                1, first["lookups"]
            )
            print(f"  per lookup incl. preparation: pyelftools/symbolic = {per_old / per_new:.0f}x")


if __name__ == "__main__":
    main()
