"""Opening files safely as root: only through the kernel's references, only regular files.

Ground truth: a decoy built from the same source with the functions renamed has the same
layout, so reading it instead of the mapped file would name every frame decoy_*.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.elf import ElfReader, load_function_symbols
from collector.proc import ProcessTable
from collector.proc.pinned import PinError, open_regular, stat_regular
from collector.proc.procfs import parse_maps, parse_stat
from collector.telemetry import Counters
from tests.support.workloads import build


@pytest.fixture(scope="module")
def real_and_decoy() -> tuple[Path, Path]:
    decoy = build("cpu_shares", ("-Dburn_a=decoy_a", "-Dburn_b=decoy_b", "-Dburn_c=decoy_c"))
    return build("cpu_shares"), decoy


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    out: list[subprocess.Popen[bytes]] = []
    yield out
    for p in out:
        p.kill()
        p.wait()


def _stopped(procs: list[subprocess.Popen[bytes]], argv: list[str], marker: str) -> int:
    """Start ``argv``, wait until ``marker`` is in its maps, and stop it (no CPU burnt)."""
    p = subprocess.Popen(argv)
    procs.append(p)
    for _ in range(500):
        try:
            if marker in Path(f"/proc/{p.pid}/maps").read_text():
                os.kill(p.pid, signal.SIGSTOP)
                return p.pid
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError(f"{argv} never mapped {marker}")


def _names_of_pinned(table: ProcessTable, pid: int) -> set[str]:
    snap = table.observe(pid)
    assert snap is not None and snap.exe_file is not None
    fd = snap.exe_file.dup()
    try:
        t = load_function_symbols(ElfReader(fd)).table
    finally:
        os.close(fd)
    return {t.name_at(i) for i in range(len(t))}


def test_path_swapped_before_the_first_look_still_pins_the_mapped_file(
    tmp_path: Path, real_and_decoy: tuple[Path, Path], procs: list[subprocess.Popen[bytes]]
) -> None:
    real, decoy = real_and_decoy
    app = tmp_path / "app"
    shutil.copyfile(real, app)
    app.chmod(0o755)
    pid = _stopped(procs, [str(app), "30"], str(app))
    link = tmp_path / "app.new"
    link.symlink_to(decoy)
    os.replace(link, app)  # the path now leads to the decoy; the process maps the original
    table = ProcessTable(Counters())
    names = _names_of_pinned(table, pid)
    assert {"burn_a", "burn_b", "burn_c"} <= names and not any(n.startswith("decoy") for n in names)
    snap = table.lookup(pid)
    assert snap is not None
    assert all(m.file is not None for m in snap.mappings if m.path.startswith(str(app)))
    table.close()


def test_binary_in_another_mount_namespace_is_read_through_map_files(
    tmp_path: Path, real_and_decoy: tuple[Path, Path], procs: list[subprocess.Popen[bytes]]
) -> None:
    """Inside its namespace the path names the real program; in ours the same path is the
    decoy. A reader that opened the path string would name the decoy's functions."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux)")
    real, decoy = real_and_decoy
    app = tmp_path / "app"
    shutil.copyfile(decoy, app)
    app.chmod(0o755)
    script = f"mount --bind {real} {app} && exec {app} 30"
    pid = _stopped(
        procs, ["unshare", "--mount", "--propagation", "private", "sh", "-c", script], "app"
    )
    table = ProcessTable(Counters())
    names = _names_of_pinned(table, pid)
    assert "burn_a" in names and "decoy_a" not in names
    table.close()


def test_fifo_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(PinError) as e:
        stat_regular(str(fifo))  # opening it would block this test forever
    assert e.value.reason == "pin_not_regular"
    with pytest.raises(PinError) as e:
        stat_regular("/dev/null")
    assert e.value.reason == "pin_not_regular"


def test_file_replaced_between_stat_and_open_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    st = stat_regular(str(a))
    os.replace(b, a)  # a new inode behind the same name
    with pytest.raises(PinError) as e:
        open_regular(str(a), st)
    assert e.value.reason == "pin_changed"


def test_mappings_per_snapshot_are_capped(procs: list[subprocess.Popen[bytes]]) -> None:
    pid = _stopped(procs, ["sleep", "30"], "libc")
    counters = Counters()
    table = ProcessTable(counters, max_mappings=1)
    snap = table.observe(pid)
    assert snap is not None and len(snap.mappings) == 1
    assert counters.get("processes", "maps_truncated") == 1
    table.close()


def test_maps_and_stat_parsers_skip_what_does_not_parse() -> None:
    maps = (
        b"55d0c0a00000-55d0c0a21000 r-xp 00002000 fd:01 1234 /usr/bin/my prog (deleted)\n"
        b"garbage line\n"
        b"zzzz-55d0c0a21000 r-xp 00002000 fd:01 1234 /x\n"
        b"55d0c0a21000-55d0c0a00000 r-xp 00002000 fd:01 1234 /backwards\n"
        b"7f0000000000-7f0000001000 r-xp 00000000 00:00 0 \xff\xfe\n"
    )
    lines = parse_maps(maps)
    assert [m.path for m in lines] == ["/usr/bin/my prog (deleted)", "\ufffd\ufffd"]
    assert lines[0].start == 0x55D0C0A00000 and lines[0].offset == 0x2000
    assert lines[0].dev == 0xFD << 32 | 0x01 and lines[1].dev == 0
    comm = b"1234 (a) b (c)) S " + b" ".join(b"%d" % i for i in range(4, 60))
    assert parse_stat(comm) == ("a) b (c)", 22)
    assert parse_stat(b"1234 (x) S 1 2") is None
    assert parse_stat(b"no parens") is None
