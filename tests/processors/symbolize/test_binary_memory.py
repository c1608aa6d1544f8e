"""The symbolizer's loaded binaries bounded by the bytes they retain (max_binary_memory).

Real fixture programs (C executables PIE and non-PIE with their shared library, C++), real
symbol tables, SymCaches and decl-line caches; the truth is what the programs print."""

from __future__ import annotations

import time
from pathlib import Path

from collector.model import RawBatch, RawSample, cpu_profile_type
from collector.proc import ProcessTable
from collector.telemetry import Counters
from processors.symbolize import SymbolizeConfig, Symbolizer
from tests.support import symbolize_fixtures as fx


def _symbolizer(**cfg: object) -> tuple[Symbolizer, Counters]:
    counters = Counters()
    # Disk SymCaches off: every (re)load builds from the binary's own DWARF.
    return Symbolizer(
        ProcessTable(counters), SymbolizeConfig(symcache_max_bytes=0, **cfg), counters
    ), counters


def _stack(run: fx.Running, kind: str) -> tuple[int, ...]:
    a = run.addrs
    if kind == "cxx":
        return (a["area"] + 1, a["twice"] + 1)
    return (a["leaf_work"] + 1, a["lib_compute"] + 4, a["caller_work"] + 4)


def _labels(sym: Symbolizer, run: fx.Running, user: tuple[int, ...]) -> list[str]:
    sample = RawSample(run.pid, run.pid, 0, "fixture", time.time_ns(), 1, user, ())
    [s] = sym.symbolize(RawBatch(cpu_profile_type(99), [sample])).samples
    return [f.label() for f in s.stack.frames]


def _lines(sym: Symbolizer, run: fx.Running, user: tuple[int, ...]) -> list[int]:
    sample = RawSample(run.pid, run.pid, 0, "fixture", time.time_ns(), 1, user, ())
    [s] = sym.symbolize(RawBatch(cpu_profile_type(99), [sample])).samples
    return [f.lines[-1].line for f in s.stack.frames]


C_NAMES = ["leaf_work", "lib_compute", "caller_work"]
CXX_NAMES = ["shapes::Circle::area(double) const", "int shapes::twice<int>(int)"]


def _start_all(bins: dict[str, Path]) -> dict[str, fx.Running]:
    return {k: fx.start(bins[k]) for k in ("pie", "nopie", "cxx")}


def test_retained_bytes_stay_under_the_budget_and_evicted_binaries_come_back(
    fixture_bins: dict[str, Path],
) -> None:
    runs = _start_all(fixture_bins)
    try:
        # Each program's own bytes, measured with no budget to speak of.
        sizes: dict[str, int] = {}
        for kind, run in runs.items():
            probe, _ = _symbolizer()
            probe.table.observe(run.pid)
            _labels(probe, run, _stack(run, kind))
            sizes[kind] = probe.binary_memory()
            assert sizes[kind] > 0
            probe.close()
        # Room for any one program's binaries, not for all three at once.
        budget = max(sizes.values()) + min(sizes.values()) // 2
        assert budget < sum(sizes.values())
        sym, counters = _symbolizer(max_binary_memory=budget)
        for run in runs.values():
            sym.table.observe(run.pid)
        truth = {"pie": C_NAMES, "nopie": C_NAMES, "cxx": CXX_NAMES}
        want_lines = [fx.source_line("fixture.c", "leaf_work")]
        for rnd in range(2):
            for kind, run in runs.items():
                user = _stack(run, kind)
                if rnd == 1:  # a new stack of the same functions: through the binaries again
                    user = (user[0] + 1, *user[1:])
                assert _labels(sym, run, user) == truth[kind]
                if kind != "cxx":
                    assert _lines(sym, run, user)[:1] == want_lines
                assert 0 < sym.binary_memory() <= budget
        get = lambda name: counters.get("symbolize", name)  # noqa: E731
        assert get("binary_memory_evicted") > 0
        assert get("binary_over_memory_budget") == 0
        # Re-read after eviction: more loads than distinct files (pie, nopie, cxx, libfix.so).
        assert get("binary_cache_misses") > 4
        assert get("binary_memory_peak_bytes") >= max(sym.binary_memory(), 1)
        assert counters.gauges()["symbolize"]["binary_memory_bytes"] == sym.binary_memory()
    finally:
        for run in runs.values():
            run.stop()


def test_a_binary_over_the_whole_budget_serves_its_batch_then_goes(
    fixture_bins: dict[str, Path],
) -> None:
    run = fx.start(fixture_bins["pie"])
    try:
        sym, counters = _symbolizer(max_binary_memory=1)
        sym.table.observe(run.pid)
        user = _stack(run, "pie")
        assert _labels(sym, run, user) == C_NAMES
        assert sym.binary_memory() == 0  # dropped at the batch's end
        get = lambda name: counters.get("symbolize", name)  # noqa: E731
        assert get("binary_over_memory_budget") >= 1
        assert get("binary_memory_evicted") >= 2  # the executable and libfix.so
        assert get("binary_memory_peak_bytes") > 1
        # Named correctly again from a fresh read (a new stack: the old one is cached).
        assert _labels(sym, run, (user[0] + 1, *user[1:])) == C_NAMES
        assert sym.binary_memory() == 0
    finally:
        run.stop()
