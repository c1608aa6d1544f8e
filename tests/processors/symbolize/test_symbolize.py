"""The symbolizer against real binaries and real processes (ground truth printed by them)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from collector.model import (
    FRAME_KERNEL,
    MISSING_KERNEL_STACK,
    MISSING_USER_STACK,
    RawBatch,
    RawSample,
    cpu_profile_type,
)
from collector.proc import ProcessTable
from collector.telemetry import Counters
from processors.symbolize import KERNEL_MAPPING_NAME, SymbolizeConfig, Symbolizer
from processors.symbolize.demangle import demangle
from tests.support import symbolize_fixtures as fx


def _symbolizer(table: ProcessTable | None = None, **cfg: object) -> tuple[Symbolizer, Counters]:
    counters = Counters()
    table = table or ProcessTable(counters)
    cfg.setdefault("dwarf_lines", True)
    return Symbolizer(table, SymbolizeConfig(**cfg), counters), counters


def _sample(pid: int, user: tuple[int, ...] = (), kernel: tuple[int, ...] = (), t: int = 0):
    return RawSample(pid, pid, 0, "fixture", t or time.time_ns(), 1, user, kernel)


def _run(sym: Symbolizer, *samples: RawSample):
    return sym.symbolize(RawBatch(cpu_profile_type(99), list(samples))).samples


@pytest.mark.parametrize("kind", ["pie", "nopie"])
def test_names_files_lines_in_exe_and_shared_lib(fixture_bins: dict[str, Path], kind: str) -> None:
    run = fx.start(fixture_bins[kind])
    try:
        sym, counters = _symbolizer()
        sym.table.observe(run.pid)
        a = run.addrs
        # leaf first: leaf_work (leaf), lib_compute and caller_work as return addresses (looked
        # up at address - 1, still in the prologue, which DWARF puts on the declaration line).
        user = (a["leaf_work"] + 1, a["lib_compute"] + 4, a["caller_work"] + 4)
        [s] = _run(sym, _sample(run.pid, user))
        frames = s.stack.frames
        assert [f.label() for f in frames] == ["leaf_work", "lib_compute", "caller_work"]
        leaf, lib, caller = (f.lines[-1] for f in frames)
        assert os.path.basename(leaf.function.filename) == "fixture.c"
        assert leaf.line == fx.source_line("fixture.c", "leaf_work")
        assert caller.line == fx.source_line("fixture.c", "caller_work")
        assert os.path.basename(lib.function.filename) == "libfix.c"
        assert lib.line == fx.source_line("libfix.c", "lib_compute")
        assert leaf.function.start_line == leaf.line
        assert frames[1].mapping is not None
        assert frames[1].mapping.filename.endswith("/libfix.so")
        assert frames[0].mapping is not None and len(frames[0].mapping.build_id) == 40
        assert s.process.pid == run.pid
        assert s.process.executable_name == f"fixture_{kind}"
        assert s.process.build_id == frames[0].mapping.build_id
        assert counters.get("symbolize", "process_unknown") == 0
        # The same raw stack again is the same interned Stack object.
        [again] = _run(sym, _sample(run.pid, user))
        assert again.stack is s.stack and again.process is s.process
    finally:
        run.stop()


def test_process_that_exited_and_whose_binary_was_deleted(
    fixture_bins: dict[str, Path], tmp_path: Path
) -> None:
    exe = tmp_path / "short_lived"
    shutil.copy(fixture_bins["pie"], exe)
    shutil.copy(fixture_bins["lib"], tmp_path / "libfix.so")
    run = fx.start(exe)
    sym, _ = _symbolizer()
    sym.table.observe(run.pid)
    t = time.time_ns()
    run.stop()
    sym.table.exit(run.pid)
    exe.unlink()
    (tmp_path / "libfix.so").unlink()
    [s] = _run(
        sym, _sample(run.pid, (run.addrs["leaf_work"] + 1, run.addrs["lib_compute"] + 4), t=t)
    )
    assert [f.label() for f in s.stack.frames] == ["leaf_work", "lib_compute"]
    assert s.process.executable_path == str(exe)


def test_cxx_names_are_demangled(fixture_bins: dict[str, Path]) -> None:
    run = fx.start(fixture_bins["cxx"])
    try:
        sym, _ = _symbolizer()
        sym.table.observe(run.pid)
        [s] = _run(sym, _sample(run.pid, (run.addrs["area"] + 1, run.addrs["twice"] + 1)))
        area, twice = s.stack.frames
        assert area.label() == "shapes::Circle::area(double) const"
        assert area.lines[-1].function.system_name == "_ZNK6shapes6Circle4areaEd"
        assert twice.label() == "int shapes::twice<int>(int)"
        assert twice.lines[-1].line == fx.source_line("fixture.cc", "twice")
        raw, _ = _symbolizer(demangle=False)
        raw.table.observe(run.pid)
        [s2] = _run(raw, _sample(run.pid, (run.addrs["area"] + 1,)))
        assert s2.stack.frames[0].label() == "_ZNK6shapes6Circle4areaEd"
    finally:
        run.stop()


def test_rust_legacy_demangling_drops_the_hash() -> None:
    assert demangle("_ZN4core3fmt9Formatter3pad17h3c1e2a7d0b9f8e6aE") == "core::fmt::Formatter::pad"
    ident = "_$LT$alloc..vec..Vec$LT$T$GT$$u20$as$u20$core..ops..drop..Drop$GT$"
    mangled = f"_ZN{len(ident)}{ident}4drop17h0123456789abcdefE"
    assert demangle(mangled) == "<alloc::vec::Vec<T> as core::ops::drop::Drop>::drop"
    # v0 goes through its own demangler (tests in test_demangle.py); C names are untouched.
    assert demangle("_RNvCs1234_7mycrate3foo") == "mycrate::foo"
    assert demangle("main") == "main"


def _kallsyms_text_symbol(name: str) -> int:
    with open("/proc/kallsyms") as f:
        for line in f:
            addr, typ, sym = line.split()[:3]
            if sym == name and typ in "tT":
                return int(addr, 16)
    pytest.skip(f"{name} not in /proc/kallsyms")


def test_kernel_address_resolves_to_kallsyms_name() -> None:
    addr = _kallsyms_text_symbol("vfs_read")
    if addr == 0:
        pytest.skip("kallsyms addresses hidden (needs root)")
    sym, _ = _symbolizer()
    [s] = _run(sym, _sample(os.getpid(), (), (addr + 4, MISSING_KERNEL_STACK)))
    top, missing = s.stack.frames
    assert top.label() == "vfs_read"
    assert top.frame_type == FRAME_KERNEL
    assert top.mapping is not None and top.mapping.filename == KERNEL_MAPPING_NAME
    assert missing.label() == "[missing kernel stack]"
    off, _ = _symbolizer(kernel=False)
    [s2] = _run(off, _sample(os.getpid(), (), (addr + 4,)))
    assert s2.stack.frames == ()


def test_kernel_frames_come_before_user_frames_and_markers_stay(
    fixture_bins: dict[str, Path],
) -> None:
    addr = _kallsyms_text_symbol("vfs_read")
    run = fx.start(fixture_bins["pie"])
    try:
        sym, _ = _symbolizer()
        sym.table.observe(run.pid)
        [s] = _run(sym, _sample(run.pid, (run.addrs["leaf_work"] + 1,), (addr + 1,)))
        # One user frame that is not an outermost function: marked, not passed off as whole.
        labels = ["vfs_read", "leaf_work", "[stack truncated: lone leaf]"]
        assert [f.label() for f in s.stack.frames] == labels
        [m] = _run(sym, _sample(run.pid, (MISSING_USER_STACK,), (addr + 1,)))
        assert [f.label() for f in m.stack.frames] == ["vfs_read", "[missing user stack]"]
    finally:
        run.stop()


def test_unresolvable_address_keeps_module_and_offset(fixture_bins: dict[str, Path]) -> None:
    run = fx.start(fixture_bins["stripped"])
    try:
        sym, counters = _symbolizer()
        snap = sym.table.observe(run.pid)
        assert snap is not None
        addr = run.addrs["leaf_work"] + 1
        m = snap.find(addr)
        assert m is not None
        [s] = _run(sym, _sample(run.pid, (addr,)))
        frame, marker = s.stack.frames
        assert marker.label() == "[stack truncated: lone leaf]"
        assert frame.lines == ()
        assert frame.label() == f"fixture_stripped+{addr - m.start + m.offset:#x}"
        assert counters.get("symbolize", "symbol_unresolved") == 1
    finally:
        run.stop()


def test_unknown_process_is_counted_and_still_emitted() -> None:
    sym, counters = _symbolizer()
    [s] = _run(sym, _sample(2**22 + 12345, (0x401000,)))  # above pid_max: never a process
    assert s.stack.frames[0].label() == "[unknown 0x401000]"
    assert s.process.executable_name == "fixture"
    assert counters.get("symbolize", "process_unknown") == 1


def _spawn_at_pid(path: Path, pid: int) -> fx.Running | None:
    """Start ``path`` as ``pid`` by steering the kernel's next pid (root only)."""
    for _ in range(20):
        try:
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(pid - 1))
        except OSError:
            return None
        run = fx.start(path)
        if run.pid == pid:
            return run
        run.stop()
    return None


def test_reused_pid_is_not_symbolized_with_the_old_snapshot(
    fixture_bins: dict[str, Path],
) -> None:
    counters = Counters()
    table = ProcessTable(counters, revalidate_s=0.0)
    sym, _ = _symbolizer(table)
    old = fx.start(fixture_bins["pie"])
    table.observe(old.pid)
    t_old = time.time_ns()
    old_addr = old.addrs["leaf_work"] + 1
    old.stop()  # no exit() report: the table must notice the reuse by start_time
    time.sleep(0.05)
    new = _spawn_at_pid(fixture_bins["cxx"], old.pid)
    if new is None:
        pytest.skip("could not steer the pid (needs root and a quiet pid namespace)")
    try:
        snap = table.observe(new.pid)
        assert snap is not None and snap.exe_path.endswith("fixture_cxx")
        t_new = time.time_ns()
        late_old, fresh = _run(
            sym,
            _sample(new.pid, (old_addr,), t=t_old),
            _sample(new.pid, (old_addr, new.addrs["twice"] + 1), t=t_new),
        )
        assert late_old.stack.frames[0].label() == "leaf_work"
        assert late_old.process.executable_name == "fixture_pie"
        assert fresh.process.executable_name == "fixture_cxx"
        assert fresh.process.start_time != late_old.process.start_time
        assert fresh.stack.frames[0].lines == ()  # the old address means nothing in the new
        assert fresh.stack.frames[1].label() == "int shapes::twice<int>(int)"
    finally:
        new.stop()


def test_dwarf_lines_off_keeps_names_without_lines(fixture_bins: dict[str, Path]) -> None:
    run = fx.start(fixture_bins["pie"])
    try:
        sym, _ = _symbolizer(dwarf_lines=False)
        sym.table.observe(run.pid)
        [s] = _run(sym, _sample(run.pid, (run.addrs["leaf_work"] + 1,)))
        [line] = s.stack.frames[0].lines
        assert line.function.name == "leaf_work"
        assert (line.line, line.function.filename) == (0, "")
    finally:
        run.stop()


def test_processor_runs_through_factory_and_host(fixture_bins: dict[str, Path]) -> None:
    import asyncio
    import logging

    from collector.component import CreateSettings
    from collector.host import Host
    from processors.symbolize import factory

    run = fx.start(fixture_bins["pie"])
    try:
        host = Host()
        config = factory.config_model(kernel=False)
        proc = factory.create(CreateSettings("symbolize", logging.getLogger("t")), config)
        host.processes.observe(run.pid)

        async def go():  # type: ignore[no-untyped-def]
            await proc.start(host)
            out = await proc.process(
                RawBatch(cpu_profile_type(99), [_sample(run.pid, (run.addrs["leaf_work"] + 1,))])
            )
            await proc.shutdown()
            await proc.shutdown()  # idempotent
            return out

        out = asyncio.run(go())
        assert (factory.type, factory.kind, factory.input, factory.output) == (
            "symbolize",
            "processor",
            "raw",
            "symbolized",
        )
        assert out.samples[0].stack.frames[0].label() == "leaf_work"
    finally:
        run.stop()


def test_caller_outside_every_mapping_truncates_the_stack(fixture_bins: dict[str, Path]) -> None:
    """Frame-pointer garbage (a 'return address' in no mapping) ends the stack with a marker,
    so noise after it cannot make every sample's stack unique."""
    run = fx.start(fixture_bins["pie"])
    try:
        sym, counters = _symbolizer()
        sym.table.observe(run.pid)
        a = run.addrs
        garbage = (0x10, 0x7)  # never mapped: the first page is reserved
        [s1, s2] = _run(
            sym,
            _sample(run.pid, (a["leaf_work"] + 1, garbage[0], a["caller_work"] + 4)),
            _sample(run.pid, (a["leaf_work"] + 1, garbage[1], a["lib_compute"] + 4)),
        )
        labels = [f.label() for f in s1.stack.frames]
        assert labels == ["leaf_work", "[stack truncated: no frame pointer]"]
        assert [f.label() for f in s2.stack.frames] == labels
        assert counters.get("symbolize", "stack_truncated") == 2
    finally:
        run.stop()


def test_cache_hits_and_misses_are_counted(fixture_bins: dict[str, Path]) -> None:
    run = fx.start(fixture_bins["pie"])
    try:
        sym, counters = _symbolizer()
        sym.table.observe(run.pid)
        a = run.addrs
        first = (a["leaf_work"] + 1, a["lib_compute"] + 4, a["caller_work"] + 4)
        other = (a["leaf_work"] + 2, a["caller_work"] + 4)
        _run(sym, _sample(run.pid, first), _sample(run.pid, first), _sample(run.pid, other))
        _run(sym, _sample(run.pid, other))
        get = lambda name: counters.get("symbolize", name)  # noqa: E731
        assert (get("stack_cache_hits"), get("stack_cache_misses")) == (2, 2)
        # Two files (the executable, libfix.so) read once each; every later frame hits.
        assert get("binary_cache_misses") == 2
        assert get("binary_cache_hits") >= 3
    finally:
        run.stop()
