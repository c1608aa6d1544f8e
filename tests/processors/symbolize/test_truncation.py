"""Stacks that stop before their outermost frame say so, and every sample of them is counted
(not once per distinct stack: the symbolizer caches stacks, and the counter once undercounted
python3.11's truncated samples by 3x that way). Real -O2 binary, real process, addresses from
nm."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from collector.model import RawBatch, RawSample, cpu_profile_type
from collector.model.raw import UNWIND_STOP_NAMES, unwind_stop_sentinel
from collector.proc import ProcessTable
from collector.telemetry import Counters
from processors.symbolize import SymbolizeConfig, Symbolizer
from tests.processors.symbolize.test_debugfiles import SRC, _run, procs
from tests.processors.symbolize.test_hostile import _nm, runtime_address

__all__ = ["procs"]  # the fixture, shared


def _o2(tmp_path: Path) -> Path:
    src, prog = tmp_path / "prog.c", tmp_path / "prog"
    src.write_text(SRC)
    # Plain -O2: gcc omits frame pointers, as distributions build.
    subprocess.run(["gcc", "-O2", str(src), "-o", str(prog)], check=True)
    return prog


def _symbolize(sym: Symbolizer, pid: int, *stacks: tuple[int, ...]) -> list:
    now = time.time_ns()
    samples = [RawSample(pid, pid, 0, "t", now, 1, u) for u in stacks]
    return sym.symbolize(RawBatch(cpu_profile_type(99), samples)).samples


def test_lone_leaf_is_marked_and_each_sample_counted(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    prog = _o2(tmp_path)
    truth = _nm(prog)
    pid = _run(procs, str(prog))
    counters = Counters()
    cfg = SymbolizeConfig(kernel=False, symcache_dir=str(tmp_path / "cache"))
    sym = Symbolizer(ProcessTable(counters), cfg, counters)
    leaf = runtime_address(pid, prog, truth["hot_loop"]) + 3
    start = runtime_address(pid, prog, truth["_start"]) + 1
    # Five samples of one lone-leaf stack (one cached Stack), one stack that is whole as far as
    # anyone can tell (its only frame is _start), one frame-pointer walk that left the mappings.
    out = _symbolize(sym, pid, *[(leaf,)] * 5, (start,), (leaf, 0x10), (leaf, 0x10))
    labels = [[f.label() for f in s.stack.frames] for s in out]
    assert labels[:5] == [["hot_loop", "[stack truncated: lone leaf]"]] * 5
    assert all(s.stack is out[0].stack for s in out[:5])
    assert labels[5] == ["_start"]
    assert labels[6] == labels[7] == ["hot_loop", "[stack truncated: no frame pointer]"]
    assert counters.get("symbolize", "stack_truncated") == 7
    assert counters.get("symbolize", "stack_truncated_lone_leaf") == 5
    assert counters.get("symbolize", "stack_truncated_no_frame_pointer") == 2


@pytest.mark.parametrize("name", ["main", "hot_loop"])
def test_a_lone_main_is_still_truncated(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]], name: str
) -> None:
    """main is not where a program starts (_start and __libc_start_call_main call it)."""
    prog = _o2(tmp_path)
    pid = _run(procs, str(prog))
    counters = Counters()
    cfg = SymbolizeConfig(kernel=False, symcache_dir=str(tmp_path / "cache"))
    sym = Symbolizer(ProcessTable(counters), cfg, counters)
    [s] = _symbolize(sym, pid, (runtime_address(pid, prog, _nm(prog)[name]) + 1,))
    assert [f.label() for f in s.stack.frames] == [name, "[stack truncated: lone leaf]"]


def test_table_unwinder_stop_reason_is_shown_and_counted(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """A walk that ended early (the sentinel after its last frame) says why, per sample."""
    prog = _o2(tmp_path)
    pid = _run(procs, str(prog))
    counters = Counters()
    cfg = SymbolizeConfig(kernel=False, symcache_dir=str(tmp_path / "cache"))
    sym = Symbolizer(ProcessTable(counters), cfg, counters)
    leaf = runtime_address(pid, prog, _nm(prog)["hot_loop"]) + 3
    no_row = unwind_stop_sentinel(3)
    assert UNWIND_STOP_NAMES[no_row] == "no_row"
    out = _symbolize(sym, pid, *[(leaf, no_row)] * 3)
    for s in out:
        assert [f.label() for f in s.stack.frames] == ["hot_loop", "[unwind stopped: no_row]"]
    assert counters.get("symbolize", "stack_truncated") == 3
    assert counters.get("symbolize", "stack_truncated_no_row") == 3
    assert counters.get("symbolize", "stack_truncated_lone_leaf") == 0
