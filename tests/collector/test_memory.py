"""collector/memory.py on the real glibc of a fresh interpreter: freed memory comes back to the
kernel with the tuning and stays without it; trims are counted; the smaps readings add up; a
profiles pipeline without network exporters never imports grpc, protobuf or aiohttp."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from collector import memory
from collector.telemetry import Counters

ROOT = Path(__file__).resolve().parents[2]
glibc = pytest.mark.skipif(memory.trim() is None, reason="needs glibc (mallopt, malloc_trim)")


def _python(code: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter (its own arenas and thresholds); it prints JSON."""
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, **env),
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.splitlines()[-1])


# 64 MB of 1 MiB buffers with a live block after each, so nothing ends at the heap's top: what
# the free()s hand back is what the allocator itself returns (mmapped blocks), not a trim. The
# live blocks are 200 KiB (under both thresholds) so that no free list serves them elsewhere.
_BUFFERS = """
import ctypes, json
from collector import memory
tuned = memory.tune_malloc()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
first = libc.malloc(1 << 20); libc.free(first)  # glibc's default raises its threshold here
base = memory.statm_kb()[1]
big, small = [], []
for _ in range(64):
    p = libc.malloc(1 << 20)
    ctypes.memset(p, 1, 1 << 20)  # touched: resident
    big.append(p)
    small.append(libc.malloc(200 << 10))
full = memory.statm_kb()[1]
for p in big:
    libc.free(p)
freed = memory.statm_kb()[1]
t = memory.trim()
trimmed = memory.statm_kb()[1]
print(json.dumps({"tuned": tuned, "grew": full - base, "kept": freed - base,
                  "after_trim": trimmed - base, "released": t.released_kb if t else None}))
"""


@glibc
def test_freed_buffers_go_back_to_the_kernel_only_when_tuned() -> None:
    on = _python(_BUFFERS, COLLECTOR_MALLOC_TUNING="1")
    off = _python(_BUFFERS, COLLECTOR_MALLOC_TUNING="0")
    assert on["tuned"] == {
        "arena_max": memory.ARENA_MAX,
        "mmap_threshold": memory.MMAP_THRESHOLD,
        "trim_threshold": memory.TRIM_THRESHOLD,
    }
    assert off["tuned"] == {} and off["released"] is None  # the switch turns trims off too
    for r in (on, off):
        assert r["grew"] >= 60 * 1024, r  # 64 MiB touched
    # Tuned: each 1 MiB block was mmapped and unmapped at free().
    assert on["kept"] < 4 * 1024, on
    # glibc's default raised its mmap threshold at the first free, so the buffers came from
    # the heap, and the live blocks between them pin the pages: nothing came back...
    assert off["kept"] > 56 * 1024, off
    # ... until a trim (which the switch also turns off).
    assert off["after_trim"] == off["kept"]


_FRAGMENTS = """
import ctypes, json
from collector import memory
memory.tune_malloc()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
base = memory.statm_kb()[1]
blocks = []
for _ in range(32 * 1024):  # 32 MiB in 1 KiB blocks: below any mmap threshold
    p = libc.malloc(1024)
    ctypes.memset(p, 1, 1024)
    blocks.append(p)
for p in blocks[:-1]:  # the last stays: the heap's top cannot shrink on its own
    libc.free(p)
kept = memory.statm_kb()[1] - base
free = memory.malloc_stats()["free"]
t = memory.trim()
print(json.dumps({"kept": kept, "free": free, "released": t.released_kb, "seconds": t.seconds,
                  "after": memory.statm_kb()[1] - base}))
"""


@glibc
def test_trim_hands_back_free_pages_inside_the_heap() -> None:
    r = _python(_FRAGMENTS)
    assert r["kept"] > 28 * 1024, r  # free() alone kept them resident
    assert r["free"] > 28 * 1024, r  # and glibc says they are free inside its heap
    assert r["released"] > 24 * 1024, r  # malloc_trim(0) madvised them away
    assert r["after"] < 8 * 1024, r
    assert r["seconds"] > 0


@glibc
def test_trim_loop_counts_every_trim() -> None:
    counters = Counters()

    async def run() -> None:
        task = asyncio.create_task(memory.trim_loop(counters, interval=0.01))
        while counters.get(memory.COMPONENT, "malloc_trims") < 3:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(run(), 60))
    snap = counters.snapshot()[memory.COMPONENT]
    assert snap["malloc_trims"] >= 3
    assert snap["malloc_trim_us"] > 0  # time is summed, so the cost shows in the reports


def test_trim_loop_ends_at_once_when_switched_off() -> None:
    r = _python(
        """
        import asyncio, json
        from collector import memory
        from collector.telemetry import Counters
        c = Counters()
        asyncio.run(asyncio.wait_for(memory.trim_loop(c, interval=0.01), 10))
        print(json.dumps(c.snapshot()))
        """,
        COLLECTOR_MALLOC_TUNING="off",
    )
    assert r == {}  # returned without sleeping, and no counters that would read 0


def test_rollup_and_regions_of_this_process_add_up() -> None:
    roll = memory.rollup()
    assert 0 < roll["Uss"] <= roll["Rss"] and 0 < roll["Pss"] <= roll["Rss"]
    regs = memory.regions()
    assert sum(r.rss for r in regs) == roll["Rss"]
    assert sum(r.anon for r in regs) == roll["Anonymous"]
    names = {r.name: r for r in regs}
    libpython = [r for n, r in names.items() if "libpython" in n or n.endswith("/python3.11")]
    lib = libpython[0] if libpython else names[os.path.realpath(sys.executable)]
    assert lib.file_clean > 0  # code pages read from the file
    assert names["[anon]"].anon > 0 or names["[heap]"].anon > 0


_IMPORTS = """
import json, sys
from collector.config.load import load_config
from collector.pipeline import Service
from collector.registry import Registry
import collector.cli, collector.selfmetrics
cfg = load_config(sys.argv[1:], Registry())
service = Service(cfg)
for (kind, cid), _ in cfg.components.items():
    if kind == "exporter":
        service.build_exporter(cfg, cid)  # what start() creates before anything runs
mods = ("grpc", "google.protobuf", "opentelemetry.proto", "aiohttp")
print(json.dumps({m: m in sys.modules for m in mods}))
"""


def _imports(tmp_path: Path, yaml_text: str) -> dict[str, bool]:
    cfg = tmp_path / "p.yaml"
    cfg.write_text(yaml_text)
    res = subprocess.run(
        [sys.executable, "-c", _IMPORTS, str(cfg)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PROFILES_DIR=str(tmp_path / "out")),
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.splitlines()[-1])


def test_default_pipeline_imports_neither_grpc_nor_protobuf_nor_aiohttp(tmp_path: Path) -> None:
    loaded = _imports(tmp_path, (ROOT / "config" / "pipeline.yaml").read_text())
    assert not any(loaded.values()), loaded  # aiohttp: 11 MB resident for nothing here


def test_an_otlp_exporter_does_import_grpc(tmp_path: Path) -> None:
    """The same check sees grpc when a configured exporter needs it (so the one above can
    fail)."""
    text = (ROOT / "config" / "pipeline.yaml").read_text()
    text = text.replace("exporters:\n", "exporters:\n  otlp:\n    endpoint: 127.0.0.1:4317\n", 1)
    text = text.replace("[folded, pprof, flamegraph]", "[folded, otlp]")
    loaded = _imports(tmp_path, text)
    assert loaded["grpc"] and loaded["google.protobuf"]
