"""The symbolizer and a library mapped after the process's maps were read (a real dlopen).

unwind_dlopen prints "ready", waits for a line, burns 0.5 s of CPU, dlopen()s its library and
prints "loaded". The maps are read (and refreshed once, as an unknown address does) before the
dlopen; a sample taken after it names the library's function at once, although the last
refresh is younger than the table's ``revalidate_s``. When even that refresh is held back,
the stack is not cached as cut short: the next sample of it is named.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

import collector.proc.table as table_mod
from collector.model import RawBatch, RawSample, cpu_profile_type
from collector.proc import ProcessTable
from collector.telemetry import Counters
from processors.symbolize import SymbolizeConfig, Symbolizer
from tests.support.workloads import build, symbol_ranges

GARBAGE = 0x10  # an address no process maps: what a broken frame-pointer chain yields


def _start(tmp: Path) -> tuple[subprocess.Popen[str], Path]:
    lib = build("unwind_dlopen_lib", ("-O2", "-shared", "-fPIC"))
    binary = build("unwind_dlopen", ("-O2",))
    proc = subprocess.Popen(
        [str(binary), "30", str(lib)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc, lib


def _lib_leaf(pid: int, lib: Path) -> int:
    """lib_leaf's address in ``pid``: the library's mapping at file offset 0 plus its vaddr
    (a shared object's first segment is at vaddr 0), from ``nm``, not from the code under test."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[5] == str(lib) and int(parts[2], 16) == 0:
            base = int(parts[0].split("-")[0], 16)
            return base + symbol_ranges(lib)["lib_leaf"][0] + 1
    raise AssertionError("the library is not mapped")


def _leaf(sym: Symbolizer, pid: int, user: tuple[int, ...]) -> str:
    """The name of the sample's first frame (a lone leaf is also marked so: not compared)."""
    sample = RawSample(pid, pid, 0, "unwind_dlopen", time.time_ns(), 1, user, ())
    [s] = sym.symbolize(RawBatch(cpu_profile_type(99), [sample])).samples
    return s.stack.frames[0].label()


def _loaded(tmp: Path) -> tuple[subprocess.Popen[str], Symbolizer, Counters, int]:
    proc, lib = _start(tmp)
    counters = Counters()
    table = ProcessTable(counters, revalidate_s=60.0)
    sym = Symbolizer(table, SymbolizeConfig(dwarf_lines=False), counters)
    table.observe(proc.pid)
    time.sleep(0.1)
    _leaf(sym, proc.pid, (GARBAGE,))  # unknown: the first refresh, before the dlopen
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "loaded"
    return proc, sym, counters, _lib_leaf(proc.pid, lib)


def test_a_sample_taken_after_the_last_refresh_refreshes_again(tmp_path: Path) -> None:
    proc, sym, _counters, leaf = _loaded(tmp_path)
    try:
        assert _leaf(sym, proc.pid, (leaf,)) == "lib_leaf"
    finally:
        proc.kill()
        proc.wait()


def test_a_stack_the_maps_lacked_is_not_cached_while_a_refresh_is_held_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, sym, counters, leaf = _loaded(tmp_path)
    try:
        with monkeypatch.context() as m:
            m.setattr(table_mod, "MIN_REFRESH_S", 3600.0)  # every refresh held back
            assert _leaf(sym, proc.pid, (leaf,)) != "lib_leaf"
        assert counters.get("symbolize", "stack_not_cached") == 1
        assert _leaf(sym, proc.pid, (leaf,)) == "lib_leaf"  # built again, now named
    finally:
        proc.kill()
        proc.wait()
