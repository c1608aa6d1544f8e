"""Ground truth on every toolchain gotoolchains offers, stripped and not, through the real
receiver, the real kernel and the real symbolize processor.

testdata/fixture.go spawns GOROUTINES goroutines from main.spawnWorkers that block on one
channel in main.waitForGo for BLOCK_MS, allocates 4 KiB slices from main.allocate, forces GCS
GC cycles from main.forceGC, and leaves LEAKS goroutines from main.leakWorkers blocked for
good. Everything it counts happens after the receiver has attached.
"""

from __future__ import annotations

import functools

import pytest

from tests.receivers.go_runtime import support
from tests.receivers.go_runtime.support import BUILDS, Phases, build_id
from tests.support import gotoolchains

pytestmark = pytest.mark.bpf

GOROUTINES = 1000
GCS = 10
ALLOCS = 20_000
BLOCK_MS = 300
LEAKS = 37
ARGV = [str(GOROUTINES), str(GCS), str(ALLOCS), str(BLOCK_MS), str(LEAKS)]


@functools.cache
def _result(version: str, stripped: bool) -> support.Result:
    binary = support.fixture("fixture", version, stripped)
    return support.run(binary, Phases(ARGV))


@pytest.fixture(params=BUILDS, ids=build_id)
def result(request: pytest.FixtureRequest) -> support.Result:
    version, stripped = request.param
    support.skip_unless_toolchain(version)
    r = _result(version, stripped)
    assert r.returncode == 0, r.output
    assert r.counters.get("targets_probed") == 1, r.counters
    return r


def test_goroutine_creations_under_the_spawning_function(result: support.Result) -> None:
    created = result.total("goroutines", "main.spawnWorkers")
    assert abs(created - GOROUTINES) <= 0.02 * GOROUTINES, (created, result.counters)
    # the go statement's stack: runtime.newproc, called by the spawning function
    stacks = [support.names(s) for s in result.samples("goroutines")]
    under = [n for n in stacks if "main.spawnWorkers" in n]
    assert all(n[0] == "runtime.newproc" and n[1] == "main.spawnWorkers" for n in under)
    leaked = result.total("goroutines", "main.leakWorkers")
    assert abs(leaked - LEAKS) <= max(1, 0.02 * LEAKS)


def test_live_goroutines_are_the_leaked_ones(result: support.Result) -> None:
    # The last snapshot (at shutdown) sees the leaked goroutines, and none of the workers
    # that ended; earlier snapshots (every 10 s) cannot have happened in this short run.
    assert result.total("goroutines_live", "main.leakWorkers") == LEAKS
    assert result.total("goroutines_live", "main.spawnWorkers") == 0


def test_channel_blocked_time_under_the_waiting_function(result: support.Result) -> None:
    total = result.total("chan_block", column=1)
    waiting = result.total("chan_block", "main.waitForGo", column=1)
    assert total > 0
    assert waiting >= 0.8 * total, (waiting, total)
    # each worker blocked about BLOCK_MS (all at once): the time is real, not a count
    assert waiting >= 0.5 * GOROUTINES * BLOCK_MS * 1e6
    # The 1000 wake-ups come in one burst: past max_rate (200 per CPU per 100 ms) they are
    # sampled and scaled back, so the count is an estimate (a few % of error), not exact.
    blocks = result.total("chan_block", "main.waitForGo")
    assert 0.8 * GOROUTINES <= blocks <= 1.2 * GOROUTINES, (blocks, result.counters)


def test_allocating_function_first_in_alloc_space(result: support.Result) -> None:
    by_function: dict[str, int] = {}
    for s in result.samples("go_alloc"):
        caller = next((n for n in support.names(s) if not n.startswith("runtime.")), "?")
        by_function[caller] = by_function.get(caller, 0) + s.more[0]
    top = max(by_function, key=by_function.__getitem__)
    assert top == "main.allocate", by_function
    # scaled back to the truth within sampling error (about 150 samples of 512 KiB)
    truth = ALLOCS * 4096
    assert 0.6 * truth <= by_function["main.allocate"] <= 1.4 * truth, by_function


def test_gc_pauses_at_least_twice_the_forced_cycles(result: support.Result) -> None:
    assert result.total("gc_pause", "main.forceGC") >= 2 * GCS, result.counters
    assert result.total("gc_pause", column=1) > 0  # nanoseconds of stop-the-world


def test_scheduling_latency_of_woken_workers(result: support.Result) -> None:
    # every worker became runnable twice (created, then readied by the send) and ran
    woken = result.total("sched_latency", "main.waitForGo")  # sampled as chan_block is
    assert woken >= 0.8 * GOROUTINES, (woken, result.counters)
    assert result.total("sched_latency", column=1) > 0


@pytest.mark.parametrize("version", [v for v, _ in BUILDS[::2]])
def test_stripped_and_unstripped_give_the_same_names_and_lines(version: str) -> None:
    support.skip_unless_toolchain(version)
    plain, stripped = _result(version, False), _result(version, True)
    for profile in ("goroutines", "chan_block", "go_alloc"):
        a = {tuple(support.lines(s)) for s in plain.samples(profile)}
        b = {tuple(support.lines(s)) for s in stripped.samples(profile)}
        mains_a = {st for st in a if any(f.startswith("main.") for f, _ in st)}
        mains_b = {st for st in b if any(f.startswith("main.") for f, _ in st)}
        assert mains_a and mains_a & mains_b, profile
        if profile != "go_alloc":  # one go statement, one channel receive: the same stacks
            assert mains_a == mains_b, profile
        assert all(line > 0 for st in mains_a | mains_b for _f, line in st)


def test_without_rate_limit_every_wakeup_is_counted() -> None:
    """max_rate: 0 records every scheduling and channel event: exact counts."""
    support.skip_unless_toolchain(gotoolchains.LATEST)
    binary = support.fixture("fixture", gotoolchains.LATEST, False)
    r = support.run(binary, Phases(ARGV, config={"max_rate": 0}))
    assert r.returncode == 0, r.output
    assert r.counters.get("go_rate_limited", 0) == 0
    blocked = r.total("chan_block", "main.waitForGo")
    assert abs(blocked - GOROUTINES) <= 0.02 * GOROUTINES, (blocked, r.counters, r.output[-3000:])
    woken = r.total("sched_latency", "main.waitForGo")
    assert woken >= 0.98 * GOROUTINES, (woken, r.counters, r.output[-3000:])


@pytest.mark.parametrize("version", [gotoolchains.OLD, gotoolchains.LATEST])
def test_pie_builds(version: str) -> None:
    """-buildmode=pie: uprobes by file offset as ever, the channel functions' ranges moved by
    the load bias (the first mapping minus the link-time base, 0x400000 for Go)."""
    support.skip_unless_toolchain(version)
    r = support.run(support.fixture("fixture", version, True, pie=True), Phases(ARGV))
    assert r.returncode == 0, r.output
    assert abs(r.total("goroutines", "main.spawnWorkers") - GOROUTINES) <= 0.02 * GOROUTINES
    waiting = r.total("chan_block", "main.waitForGo", column=1)
    assert waiting >= 0.8 * r.total("chan_block", column=1) > 0
    assert r.total("gc_pause", "main.forceGC") >= 2 * GCS
    assert r.total("goroutines_live", "main.leakWorkers") == LEAKS
