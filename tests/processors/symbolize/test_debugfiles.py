"""Separate debug files (build id, .gnu_debuglink) and the on-disk SymCache, on real binaries
and real processes; ground truth from nm/the source, never from the code under test."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.elf import ElfError
from collector.elf.debuglink import build_id_path, parse_debuglink
from collector.model import RawBatch, RawSample, cpu_profile_type
from collector.proc import ProcessTable
from collector.telemetry import Counters
from processors.symbolize import SymbolizeConfig, Symbolizer
from tests.conftest import IN_CI
from tests.processors.symbolize.test_hostile import _nm, runtime_address

LIBC = Path("/usr/lib/x86_64-linux-gnu/libc.so.6")
SRC = """\
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
volatile unsigned long sink;
static inline __attribute__((always_inline)) unsigned long mix(unsigned long x) {
    return x * 2654435761u ^ (x >> 7); /* MIX_LINE */
}
__attribute__((noinline)) unsigned long hot_loop(unsigned long n) { /* HOT_DECL */
    unsigned long s = 0;
    for (unsigned long i = 0; i < n; i++) s += mix(i); /* CALL_LINE */
    return s;
}
int main(int argc, char **argv) {
    printf("ready\\n"); fflush(stdout);
    for (;;) { sink = hot_loop(1000 + argc); usleep(1000); }
}
"""


def _line(marker: str) -> int:
    return next(i for i, t in enumerate(SRC.splitlines(), 1) if marker in t)


def _symbolizer(cache: Path, **cfg: object) -> tuple[Symbolizer, Counters]:
    counters = Counters()
    config = SymbolizeConfig(kernel=False, symcache_dir=str(cache), **cfg)
    return Symbolizer(ProcessTable(counters), config, counters), counters


def _frames(sym: Symbolizer, pid: int, *user: int) -> list:
    batch = RawBatch(cpu_profile_type(99), [RawSample(pid, pid, 0, "t", time.time_ns(), 1, user)])
    [s] = sym.symbolize(batch).samples
    return list(s.stack.frames)


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def _run(procs: list[subprocess.Popen[bytes]], *cmd: str) -> int:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    procs.append(p)
    if cmd[0] != "sleep":
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
    else:
        time.sleep(0.1)
    return p.pid


def _build_split(
    d: Path, crc_ok: bool = True, pie: str = "-pie"
) -> tuple[Path, Path, dict[str, int]]:
    """prog built -O2 -g, its DWARF and .symtab moved to prog.debug, prog stripped of both
    and linked to it; returns (prog, debug file, nm of the unstripped build)."""
    if shutil.which("gcc") is None or shutil.which("objcopy") is None:
        pytest.skip("needs gcc and binutils")
    src = d / "prog.c"
    src.write_text(SRC)
    prog, dbg = d / "prog", d / "prog.debug"
    pic = "-fPIE" if pie == "-pie" else "-fno-pie"
    subprocess.run(["gcc", "-O2", "-g", pic, pie, str(src), "-o", str(prog)], check=True)
    truth = _nm(prog)
    subprocess.run(["objcopy", "--only-keep-debug", str(prog), str(dbg)], check=True)
    subprocess.run(["strip", "--strip-all", str(prog)], check=True)
    subprocess.run(["objcopy", f"--add-gnu-debuglink={dbg}", str(prog)], cwd=d, check=True)
    if not crc_ok:
        with dbg.open("r+b") as f:  # one byte of padding at the end changes the CRC only
            f.seek(0, os.SEEK_END)
            f.write(b"\0")
    assert "hot_loop" not in _nm(prog)  # the names can only come from the debug file
    return prog, dbg, truth


@pytest.mark.parametrize("pie", ["-pie", "-no-pie"])
def test_debuglink_gives_names_lines_and_inlined_calls(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]], pie: str
) -> None:
    prog, _dbg, truth = _build_split(tmp_path, pie=pie)
    pid = _run(procs, str(prog))
    sym, counters = _symbolizer(tmp_path / "cache")
    start = runtime_address(pid, prog, truth["hot_loop"])
    # Every address of hot_loop: each is named, and the inlined mix() shows as its own frame
    # at its own line with hot_loop at the call line.
    seen_inline = False
    nm = subprocess.run(["nm", "-S", str(_dbg)], capture_output=True, text=True).stdout
    size = next(int(ln.split()[1], 16) for ln in nm.splitlines() if ln.endswith(" hot_loop"))
    for off in range(size):
        frames = _frames(sym, pid, start + off, start + off)  # leaf + a dummy caller
        lines = frames[0].lines
        assert lines[-1].function.name == "hot_loop"
        # The line of its first instruction (at -O2 the loop's, not the declaration's).
        assert _line("HOT_DECL") <= lines[-1].function.start_line <= _line("CALL_LINE")
        assert os.path.basename(lines[-1].function.filename) == "prog.c"
        if len(lines) == 2:
            seen_inline = True
            assert lines[0].function.name == "mix" and lines[0].line == _line("MIX_LINE")
            assert lines[1].line == _line("CALL_LINE")
    assert seen_inline
    assert counters.get("symbolize", "debug_file_debuglink") == 1
    assert counters.get("symbolize", "symcache_builds") == 1


def test_debuglink_with_a_wrong_crc_is_not_used(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    prog, _dbg, truth = _build_split(tmp_path, crc_ok=False)
    pid = _run(procs, str(prog))
    sym, counters = _symbolizer(tmp_path / "cache")
    frames = _frames(sym, pid, runtime_address(pid, prog, truth["hot_loop"]) + 1)
    assert frames[0].label().startswith("prog+0x")  # only .dynsym left: no hot_loop
    assert counters.get("symbolize", "debug_file_missing") == 1
    assert counters.get("symbolize", "debug_file_debuglink") == 0


def test_debuglink_in_a_directory_a_user_can_write_is_not_searched(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    d = tmp_path / "user"
    d.mkdir()
    prog, _dbg, truth = _build_split(d)
    os.chown(d, 65534, 65534)  # nobody's directory: root never opens files there for it
    pid = _run(procs, str(prog))
    sym, counters = _symbolizer(tmp_path / "cache")
    frames = _frames(sym, pid, runtime_address(pid, prog, truth["hot_loop"]) + 1)
    assert frames[0].label().startswith("prog+0x")
    assert counters.get("symbolize", "debug_file_missing") == 1


def test_libc_internals_are_named_from_libc6_dbg(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    """__libc_start_call_main is a local symbol: not in libc's .dynsym, only in the debug
    file's .symtab. A real process using libc gets that name and a line for it."""
    out = subprocess.run(["readelf", "-n", str(LIBC)], capture_output=True, text=True).stdout
    build_id = next(ln.split()[-1] for ln in out.splitlines() if "Build ID" in ln)
    dbg = build_id_path(build_id)
    if dbg is None or not os.path.exists(dbg):
        if IN_CI:
            raise AssertionError("libc6-dbg must be installed in CI (scripts/setup.sh)")
        pytest.skip("libc6-dbg is not installed")
    vaddr = _nm(Path(dbg))["__libc_start_call_main"]
    assert "__libc_start_call_main" not in _nm(LIBC, "-D")
    pid = _run(procs, "sleep", "30")
    addr = runtime_address(pid, LIBC.resolve(), vaddr)
    sym, counters = _symbolizer(tmp_path / "cache")
    [frame] = _frames(sym, pid, addr + 8)[:1]
    assert frame.label() == "__libc_start_call_main"
    line = frame.lines[-1]
    assert line.function.filename.endswith("libc_start_call_main.h") and line.line > 0
    assert counters.get("symbolize", "debug_file_build_id") >= 1


def test_symcache_is_reused_from_disk_and_a_corrupt_one_rebuilt(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    prog, _dbg, truth = _build_split(tmp_path)
    pid = _run(procs, str(prog))
    cache = tmp_path / "cache"
    addr = runtime_address(pid, prog, truth["hot_loop"]) + 1
    first, c1 = _symbolizer(cache)
    want = _frames(first, pid, addr)[0].lines
    assert c1.get("symbolize", "symcache_builds") == 1
    assert (cache.stat().st_mode & 0o777) == 0o700
    [f] = [p for p in cache.iterdir() if p.suffix == ".symc"]
    # A restart: the cache comes from disk, with the same answer.
    second, c2 = _symbolizer(cache)
    assert _frames(second, pid, addr)[0].lines == want
    assert c2.get("symbolize", "symcache_disk_hits") == 1
    assert c2.get("symbolize", "symcache_builds") == 0
    # Corrupt it (kept the size, garbage inside): refused, counted, rebuilt, same answer.
    f.write_bytes(b"SYMC" + b"\xff" * (f.stat().st_size - 4))
    third, c3 = _symbolizer(cache)
    assert _frames(third, pid, addr)[0].lines == want
    assert c3.get("symbolize", "symcache_corrupt") == 1
    assert c3.get("symbolize", "symcache_builds") == 1
    # Truncated to a few bytes: the same.
    f.write_bytes(f.read_bytes()[:100])
    fourth, c4 = _symbolizer(cache)
    assert _frames(fourth, pid, addr)[0].lines == want
    assert c4.get("symbolize", "symcache_corrupt") == 1


def test_symcache_dir_stays_within_its_size(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    cache = tmp_path / "cache"
    sizes = []
    for name in ("a", "b", "c"):
        d = tmp_path / name
        d.mkdir()
        prog, _dbg, truth = _build_split(d)
        pid = _run(procs, str(prog))
        sym, _ = _symbolizer(cache, symcache_max_bytes=1 << 20)
        _frames(sym, pid, runtime_address(pid, prog, truth["hot_loop"]) + 1)
        sizes.append(sum(p.stat().st_size for p in cache.iterdir()))
    one = sizes[0]
    assert one > 0 and sizes[-1] <= 1 << 20
    # Now a budget for two files: the oldest goes when the third is written.
    shutil.rmtree(cache)
    for name in ("a", "b", "c"):
        prog = tmp_path / name / "prog"
        pid = _run(procs, str(prog))
        sym, _ = _symbolizer(cache, symcache_max_bytes=2 * one + one // 2)
        _frames(sym, pid, runtime_address(pid, prog, _nm_debug(prog)) + 1)
    assert len([p for p in cache.iterdir() if p.suffix == ".symc"]) == 2


def _nm_debug(prog: Path) -> int:
    return _nm(prog.with_name("prog.debug"))["hot_loop"]


def test_debuglink_parsing_refuses_bad_bytes() -> None:
    ok = parse_debuglink(b"libc.so.6.debug\0" + b"\x78\x56\x34\x12")
    assert ok.name == "libc.so.6.debug" and ok.crc == 0x12345678
    for bad in (
        b"",
        b"\0\0\0\0\0\0\0\0",  # empty name
        b"x" * 300,  # no NUL
        b"name\0\0\0",  # no room for the CRC
        b"../../etc/shadow\0\0\0\0\0\0\0\0",  # a path, not a name
        b"\xff\xfe\0\0\0\0\0\0",  # not UTF-8
    ):
        with pytest.raises(ElfError):
            parse_debuglink(bad)
