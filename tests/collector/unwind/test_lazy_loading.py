"""How a stack receiver's unwind worker spends its CPU: held to a budget, most-sampled
process first, nothing for a process that exits while it waits, preloaded pids regardless.

The budget is plain arithmetic on a clock (checked with a stepped one); the worker runs on the
real maps of bpf/unwind.h (the self-test program, not attached) with real processes."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from collector.bpf import LoadedProgram, load
from collector.bpf.unwinding import TableUnwinding
from collector.unwind.budget import CpuBudget
from collector.unwind.selftest import PROGRAM
from tests.support.workloads import build


def test_the_budget_allows_its_rate_after_a_burst() -> None:
    now = [0.0]
    b = CpuBudget(rate=0.1, burst=0.5, clock=lambda: now[0])
    assert b.wait_s() == 0
    b.charge(0.7)  # one build may overdraw the burst
    assert b.wait_s() == pytest.approx(2.0, abs=0.01)  # 0.2 s of debt at 0.1 s per second
    now[0] = 2.1
    assert b.wait_s() == 0
    now[0] = 1000.0
    b.charge(0.0)
    b.charge(0.5)  # the bucket held at most `burst`, however long it was idle
    assert b.wait_s() > 0
    with pytest.raises(ValueError):
        CpuBudget(0, 1)


@pytest.fixture(scope="module")
def prog() -> Iterator[LoadedProgram]:
    p = load(PROGRAM, {"UNWIND_ROWS": 1 << 20}, [])
    yield p
    p.close()


def _spawn(n: int) -> list[subprocess.Popen[bytes]]:
    """``n`` processes of ``n`` distinct binaries (own build ids: each needs its own table)."""
    bins = [build("busy_many", ("-O1", f"-DHOT=hot_lazy_{i}")) for i in range(n)]
    procs = [subprocess.Popen([str(b), "60"]) for b in bins]
    time.sleep(0.5)  # exec'd and mapped
    return procs


def _until(cond: object, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


@pytest.mark.bpf
def test_over_budget_loads_wait_exited_ones_cost_nothing_preloads_go_first(
    prog: LoadedProgram,
) -> None:
    counts: dict[str, int] = {}
    # 1 ms of CPU at once, then 1 ms per second: the first load (preloaded, so it ignores the
    # budget, but is charged: table builds of tens of ms) leaves the budget in debt for far
    # longer than this test runs.
    tu = TableUnwinding(
        prog, "t", logging.getLogger("t"), counts.__setitem__, budget=1e-3, burst=1e-3
    )
    procs = _spawn(4)
    try:
        first, waits, leaves, urgent = (p.pid for p in procs)
        assert tu.preload([first], timeout=30) and tu.maps.entries(first)
        assert _until(lambda: tu._worker_counts["worker_cpu_ms"] > 1)
        for pid in (waits, leaves):
            tu.process_seen(pid)
            tu.sampled(pid)
        tu.wake()  # what the reader does at the end of a drain
        # `waits` is taken and held before its binary's table build; `leaves` stays queued.
        assert _until(lambda: tu._worker_counts["budget_waits"] >= 1)
        time.sleep(0.3)
        assert not tu.maps.entries(waits) and not tu.maps.entries(leaves)
        assert tu._busy == waits and list(tu._pending) == [leaves]
        tu.process_exit(leaves)  # gone before its turn: dropped from the queue
        # A configured pid does not wait: the build in hand goes through, then it loads.
        assert tu.preload([urgent], timeout=30)
        assert tu.maps.entries(urgent) and tu.maps.entries(waits)
        tu.process_exit(first)
        tu.wake()
        assert _until(lambda: not tu.maps.entries(first))  # removals are not held back
        tu.read_counters()
        assert tu._worker_counts["skipped_exited"] == 1 and tu._worker_counts["queued"] == 4
        assert counts["unwind_budget_waits"] >= 1 and counts["unwind_worker_cpu_ms"] > 0
        assert tu.maps.stats()["processes_loaded"] == 3
    finally:
        tu.close()
        for p in procs:
            p.kill()
            p.wait()


@pytest.mark.bpf
def test_a_loaded_process_that_execs_is_reloaded_at_the_exec_and_only_once(
    prog: LoadedProgram,
) -> None:
    binary = build("busy_many", ("-O1", "-DHOT=hot_lazy_exec"))
    gate = 'read _ && exec "$0" "$@"'
    shells = [
        subprocess.Popen(["sh", "-c", gate, str(binary), "60"], stdin=subprocess.PIPE)
        for _ in range(2)
    ]
    counts: dict[str, int] = {}
    tu = TableUnwinding(prog, "t", logging.getLogger("t"), counts.__setitem__)
    try:
        loaded, unloaded = (s.pid for s in shells)
        assert tu.preload([loaded], timeout=30) and tu.maps.entries(loaded)
        for s in shells:
            assert s.stdin is not None
            s.stdin.write(b"go\n")
            s.stdin.close()
        for s in shells:
            assert _until(lambda s=s: os.readlink(f"/proc/{s.pid}/exe") == str(binary))
        time.sleep(0.2)  # ld.so has mapped libc
        queued = tu._worker_counts["queued"]
        for pid in (loaded, unloaded):
            tu.process_exec(pid)  # what the reader does at each one's exec event
        tu.wake()  # and at the end of its drain
        # The loaded one is reloaded with no event of its new image; the other waits for one.
        assert _until(lambda: str(binary) in _executable_paths(tu, loaded))
        assert not tu.maps.entries(unloaded)
        assert tu._worker_counts["exec_queued"] == 1
        # Its new image's first event (EVENT_F_NEW_PID) finds the load done: not queued again.
        tu.process_seen(loaded)
        assert tu._worker_counts["queued"] == queued and not tu._pending
        tu.process_seen(unloaded)
        tu.wake()
        assert tu._worker_counts["queued"] == queued + 1
        assert _until(lambda: str(binary) in _executable_paths(tu, unloaded))
    finally:
        tu.close()
        for s in shells:
            s.kill()
            s.wait()


def _executable_paths(tu: TableUnwinding, pid: int) -> set[str]:
    return {e.path for e in tu.maps.entries(pid)}


class _FailingBudget:
    def charge(self, seconds: float) -> None:
        raise RuntimeError("injected: budget bookkeeping failed")

    def wait_s(self) -> float:
        return 0.0


@pytest.mark.bpf
def test_a_worker_that_fails_outside_a_job_says_so_and_is_counted(
    prog: LoadedProgram, caplog: pytest.LogCaptureFixture
) -> None:
    counts: dict[str, int] = {}
    tu = TableUnwinding(prog, "t", logging.getLogger("t"), counts.__setitem__)
    proc = subprocess.Popen(["sleep", "30"])
    try:
        tu._budget = _FailingBudget()  # type: ignore[assignment]
        with caplog.at_level(logging.ERROR, logger="t"):
            tu.process_seen(proc.pid)
            tu.wake()
            assert _until(lambda: not tu._thread.is_alive())
        assert "the table worker stopped" in caplog.text and "injected" in caplog.text
        tu.read_counters()
        assert counts["unwind_worker_failed"] == 1
    finally:
        tu.close()
        proc.kill()
        proc.wait()
