"""Pins under a descriptor budget: least recently used parked, reopened on demand as the same
file (through the process's map_files while it lives, else the path if the identity matches)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from collector.proc import ProcessTable
from collector.proc.fdbudget import FdBudget
from collector.proc.pinned import PinnedFile, map_files_path, open_regular, stat_regular
from collector.proc.procfs import read_maps
from collector.telemetry import Counters


def _pin(path: Path, budget: FdBudget, ref: str = "") -> PinnedFile:
    st = stat_regular(str(path))
    fd, fst = open_regular(str(path), st)
    return PinnedFile(fd, fst, str(path), ref, budget)


def _read(pin: PinnedFile) -> bytes:
    fd = pin.dup()
    try:
        return os.pread(fd, 64, 0)
    finally:
        os.close(fd)


def test_least_recently_used_pin_is_parked_and_reopened(tmp_path: Path) -> None:
    counters = Counters()
    budget = FdBudget(2, counters)
    files = []
    for i in range(3):
        f = tmp_path / f"f{i}"
        f.write_bytes(f"file {i}".encode())
        files.append(f)
    a, b = _pin(files[0], budget), _pin(files[1], budget)
    _read(a)  # a is now the most recently used: b goes when c arrives
    c = _pin(files[2], budget)
    assert len(budget) == 2 and b.fd < 0 and not b.closed and a.fd >= 0 and c.fd >= 0
    assert counters.get("processes", "pin_parked") == 1
    assert _read(b) == b"file 1"  # reopened by its path: same inode, size and mtime
    assert counters.get("processes", "pin_reopened") == 1
    assert len(budget) == 2 and a.fd < 0  # and the least recently used went in turn
    for p in (a, b, c):
        p.close()
    assert len(budget) == 0 and all(p.closed for p in (a, b, c))
    with pytest.raises(OSError):
        a.dup()


def test_parked_pin_of_a_replaced_file_is_not_reopened_as_another(tmp_path: Path) -> None:
    counters = Counters()
    budget = FdBudget(1, counters)
    f, other = tmp_path / "f", tmp_path / "other"
    f.write_bytes(b"original")
    other.write_bytes(b"other")
    pin = _pin(f, budget)
    _pin(other, budget)  # parks the first
    assert pin.fd < 0
    decoy = tmp_path / "decoy"
    decoy.write_bytes(b"a decoy!")  # same size, another inode
    os.replace(decoy, f)
    with pytest.raises(OSError):
        pin.dup()
    assert counters.get("processes", "pin_reopen_failed") == 1
    f.unlink()
    os.mkfifo(f)  # a FIFO at the path is looked at through O_PATH only, never opened
    with pytest.raises(OSError):
        pin.dup()


def test_parked_pin_reopens_through_map_files_after_its_path_is_gone(tmp_path: Path) -> None:
    app = tmp_path / "app"
    shutil.copyfile("/bin/sleep", app)
    app.chmod(0o755)
    p = subprocess.Popen([str(app), "30"])
    try:
        for _ in range(500):
            maps = read_maps(p.pid) or []
            if any(m.path == str(app) for m in maps):
                break
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGSTOP)
        m = next(m for m in maps if m.path == str(app))
        counters = Counters()
        budget = FdBudget(1, counters)
        ref = map_files_path(p.pid, m.start, m.end)
        st = stat_regular(ref)
        fd, fst = open_regular(ref, st)
        pin = PinnedFile(fd, fst, str(app), ref, budget)
        want = _read(pin)
        _pin(Path("/bin/true"), budget)  # parks it
        app.unlink()  # the path leads nowhere now: only the process's own reference works
        assert pin.fd < 0 and _read(pin) == want
        assert counters.get("processes", "pin_reopened") == 1
    finally:
        p.kill()
        p.wait()


def test_table_under_a_tiny_budget_keeps_every_binary_readable(tmp_path: Path) -> None:
    procs, table = [], ProcessTable(Counters(), max_pinned=4, max_idle_pinned=0)
    try:
        for i in range(8):
            app = tmp_path / f"app{i}"
            shutil.copyfile("/bin/sleep", app)
            with app.open("ab") as f:
                f.write(str(i).encode())  # distinct content, distinct identity
            app.chmod(0o755)
            procs.append(subprocess.Popen([str(app), "30"]))
        time.sleep(0.2)
        snaps = [table.observe(p.pid) for p in procs]
        assert table.stats()["open_pins"] <= 4
        for s in snaps:
            assert s is not None and s.exe_file is not None
            assert _read(s.exe_file)[:4] == b"\x7fELF"
        assert table.stats()["open_pins"] <= 4
        assert table.counters.get("processes", "pin_reopened") > 0
    finally:
        for p in procs:
            p.kill()
            p.wait()
        table.close()
