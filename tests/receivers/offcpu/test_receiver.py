"""The offcpu receiver on the real kernel against workloads that measure their own waits.

offcpu_two_waits sleeps in wait_long() and wait_short() and prints how long it really slept;
it is built -no-pie so raw user addresses can be checked against ``nm`` symbol ranges without
any symbolizer. offcpu_fsync waits in fsync (uninterruptible, D state) on a real disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.component import CreateSettings
from collector.host import Host
from collector.model import MISSING_USER_STACK, RawBatch, RawSample
from collector.model.raw import UNWIND_REASONS, unwind_stop_sentinel
from receivers.offcpu import factory
from receivers.offcpu.config import OffCpuConfig
from tests.support.workloads import build, symbol_ranges

pytestmark = pytest.mark.bpf

NOPIE = ("-no-pie",)
# -O2 without frame pointers (the last -f wins over the base flags'): unwound from tables.
# At -O2 gcc turns wait_long() into a tail call of sleep_ms(), so no unwinder (perf's
# neither) could see it on the stack: sibling calls stay calls to keep the truth checkable.
O2_NOPIE = ("-no-pie", "-O2", "-fomit-frame-pointer", "-fno-optimize-sibling-calls")
NO_PROCESS = unwind_stop_sentinel(UNWIND_REASONS.index("no_process"))


class ListConsumer:
    def __init__(self) -> None:
        self.batches: list[RawBatch] = []

    def consume(self, batch: RawBatch) -> bool:
        self.batches.append(batch)
        return True


class RecordingProcesses:
    """Stands in for host.processes to record which calls the receiver makes."""

    def __init__(self) -> None:
        self.observed: list[int] = []
        self.exited: list[int] = []

    def observe(self, pid: int) -> None:
        self.observed.append(pid)

    def exec(self, pid: int, at_ns: int = 0) -> None:
        pass

    def exit(self, pid: int) -> None:
        self.exited.append(pid)

    def verified_identity(self, dev: int, inode: int) -> None:
        return None  # nothing stat-ed: the unwind worker stats every mapping


class Run:
    def __init__(self, consumer: ListConsumer, host: Host, procs: RecordingProcesses) -> None:
        self.consumer = consumer
        self.host = host
        self.procs = procs
        self.outputs: dict[int, dict[str, int]] = {}  # pid -> parsed "key=value" output
        self.window = (0, 0)

    def samples(self, pid: int) -> list[RawSample]:
        return [s for b in self.consumer.batches for s in b.samples if s.pid == pid]

    def total(self, pid: int) -> int:
        return sum(s.value for s in self.samples(pid))


async def _run(config: OffCpuConfig, *argvs: list[str]) -> Run:
    """Run the workloads under the receiver, filtered to their pids.

    Each workload waits at a gate (a shell reading stdin, which then execs it under the same
    pid) until the receiver runs with ``pids`` set to them: the stack map then holds only
    their stacks, so another process's stack cannot collide with theirs in its hash and
    turn their samples into missing-stack markers (a whole-machine run hit that ~1 in 20).
    """
    gate = 'read _ && exec "$0" "$@"'
    children = [
        await asyncio.create_subprocess_exec(
            "sh", "-c", gate, *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for argv in argvs
    ]
    config = config.model_copy(update={"pids": [c.pid for c in children]})
    consumer = ListConsumer()
    host = Host()
    procs = RecordingProcesses()
    host._processes = procs  # type: ignore[assignment]
    receiver = factory.create(
        CreateSettings(id="offcpu", logger=logging.getLogger("test"), consumer=consumer), config
    )
    run = Run(consumer, host, procs)
    t0 = time.time_ns()
    await receiver.start(host)
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.close()
    for child, argv in zip(children, argvs, strict=True):
        out, _ = await child.communicate()
        assert child.returncode == 0, argv
        run.outputs[child.pid] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", out.decode())}
    await receiver.shutdown()
    await receiver.shutdown()  # idempotent
    run.window = (t0, time.time_ns())
    return run


def _split(run: Run, pid: int, binary: Path) -> tuple[int, int, int, int]:
    """Off-CPU ns attributed to wait_long, wait_short, neither, and neither in a wait walked
    before the process's tables were loaded (its walk ended ``no_process``: the first waits
    after the exec, which come before user space heard of the exec)."""
    ranges = symbol_ranges(binary)
    lo_long, hi_long = ranges["wait_long"]
    lo_short, hi_short = ranges["wait_short"]
    long_ns = short_ns = other = before_load = 0
    for s in run.samples(pid):
        if any(lo_long <= a < hi_long for a in s.user_stack):
            long_ns += s.value
        elif any(lo_short <= a < hi_short for a in s.user_stack):
            short_ns += s.value
        elif s.user_stack[-1] == NO_PROCESS:
            before_load += s.value
        else:
            other += s.value
    return long_ns, short_ns, other, before_load


@pytest.mark.parametrize(
    ("hook", "flags", "unwind"),
    [
        ("raw_tracepoint", NOPIE, "frame_pointers"),
        ("tracepoint", NOPIE, "frame_pointers"),
        ("raw_tracepoint", O2_NOPIE, "auto"),
        ("tracepoint", O2_NOPIE, "tables"),
    ],
)
def test_split_between_functions_and_total_match_the_truth(
    hook: str, flags: tuple[str, ...], unwind: str
) -> None:
    binary = build("offcpu_two_waits", flags)
    config = OffCpuConfig(hook=hook, unwind=unwind)  # type: ignore[arg-type]
    run = asyncio.run(_run(config, [str(binary), "25", "30", "10"]))
    [(pid, out)] = run.outputs.items()
    truth = out["long_ns"] + out["short_ns"]
    long_ns, short_ns, other, before_load = _split(run, pid, binary)

    share = long_ns / max(long_ns + short_ns, 1)
    assert abs(share - 0.75) <= 0.05, (long_ns, short_ns, other, before_load)
    assert abs(run.total(pid) - truth) <= 0.15 * truth, (run.total(pid), truth)
    # Nearly every wait is in one of the two functions. Without frame pointers, the waits
    # walked before the tables were loaded are not (here one 30 ms wait: the exec reloads a
    # preloaded pid at once; ci13 lost 176 ms when it waited for the first event instead).
    assert other <= 0.05 * truth, (long_ns, short_ns, other, before_load)
    assert before_load <= (0.1 if unwind != "frame_pointers" else 0) * truth, before_load

    samples = run.samples(pid)
    t0, t1 = run.window
    # comm is taken when the wait starts: a wait of the forked child before its exec shows
    # the parent's name, which is right.
    execed = [s for s in samples if s.comm == "offcpu_two_wait"]  # comm keeps 15 characters
    assert len(execed) >= 50  # one per wait (the process's start-up waits come on top)
    for s in samples:
        assert s.tid == out["tid"] == pid  # single-threaded: the main thread waits
        assert t0 <= s.time_ns <= t1
        assert s.kernel_stack and all(a > 0xFFFF000000000000 for a in s.kernel_stack)
        assert s.user_stack and s.user_stack[0] != MISSING_USER_STACK
    batch = run.consumer.batches[0]
    assert batch.profile_type.name == "off_cpu"
    assert (batch.profile_type.sample_type, batch.profile_type.sample_unit) == (
        "off_cpu",
        "nanoseconds",
    )
    assert pid in run.procs.observed and pid in run.procs.exited
    assert run.host.counters.get("offcpu", "bpf_events") >= len(samples)
    assert run.host.counters.get("offcpu", "ringbuf_full") == 0


def test_sample_ratio_scales_values_so_the_total_stays_unbiased() -> None:
    binary = build("offcpu_two_waits", NOPIE)
    # 600 short waits: half of them recorded; the scaled total estimates the whole.
    config = OffCpuConfig(sample_ratio=0.5)
    run = asyncio.run(_run(config, [str(binary), "300", "3", "1"]))
    [(pid, out)] = run.outputs.items()
    truth = out["long_ns"] + out["short_ns"]
    samples = run.samples(pid)
    assert 0.35 * 600 <= len(samples) <= 0.65 * 600  # sampling really happened
    assert abs(run.total(pid) - truth) <= 0.15 * truth, (run.total(pid), truth)
    notes = run.consumer.batches[0].profile_type.notes
    assert any("inverse of each wait's sampling probability (sample_ratio=0.5" in n for n in notes)


def test_defaults_record_every_wait_of_a_normal_workload() -> None:
    binary = build("offcpu_two_waits", NOPIE)
    run = asyncio.run(_run(OffCpuConfig(), [str(binary), "300", "3", "1"]))
    [(pid, out)] = run.outputs.items()
    samples = run.samples(pid)
    counters = run.host.counters.snapshot().get("offcpu", {})
    # One per blocking switch-out of the loop (start-up waits on top): max_rate never bit.
    # The workload counts them (voluntary context switches): under load a 1 ms sleep whose
    # timer fires before the preempted thread reaches schedule() never blocks. A wait shorter
    # than min_block, or one whose switch-in was not seen, is counted, not sent.
    unsent = counters.get("below_min_block", 0) + counters.get("no_switch_in", 0)
    assert out["switches"] >= 0.9 * 600, out  # the loop's 600 sleeps, nearly all blocking
    assert len(samples) + unsent >= out["switches"], f"{len(samples)} {out} {counters}"
    assert run.host.counters.get("offcpu", "rate_limited") == 0
    truth = out["long_ns"] + out["short_ns"]
    assert abs(run.total(pid) - truth) <= 0.15 * truth, (run.total(pid), truth)


def test_max_rate_samples_adaptively_and_keeps_totals_and_split() -> None:
    binary = build("offcpu_two_waits", NOPIE)
    # 4000 waits in about 8.5 s (about 470/s) against a budget of 100 recorded switch-outs per
    # second per CPU: most waits are skipped in BPF, each recorded one is scaled by the inverse
    # of its own probability. (A budget of 20/s gives too few samples for a 5-point split
    # tolerance on a run of reasonable length: the split's standard error is about
    # 0.37/sqrt(samples), so ~400+ samples are needed.)
    config = OffCpuConfig(max_rate=100)
    run = asyncio.run(_run(config, [str(binary), "2000", "3", "1"]))
    [(pid, out)] = run.outputs.items()
    truth = out["long_ns"] + out["short_ns"]
    samples = run.samples(pid)
    assert 200 <= len(samples) <= 0.5 * 4000, len(samples)  # sampled, but still plenty
    assert run.host.counters.get("offcpu", "rate_limited") > 0
    long_ns, short_ns, other, before_load = _split(run, pid, binary)
    total = long_ns + short_ns + other + before_load
    assert abs(total - truth) <= 0.15 * truth, (total, truth, len(samples))
    true_share = out["long_ns"] / truth
    share = long_ns / max(long_ns + short_ns, 1)
    assert abs(share - true_share) <= 0.05, (share, true_share, len(samples))
    assert any(s.value > 2 * 3_500_000 for s in samples)  # scaled: no wait is that long
    notes = run.consumer.batches[0].profile_type.notes
    assert any("max_rate=100/s per CPU" in n for n in notes), notes


@pytest.fixture
def fsync_target() -> Iterator[str]:
    # fsync waits in D state only on a real block device: tmpfs (often /tmp) returns at once.
    folder = tempfile.mkdtemp(prefix="offcpu-", dir="/var/tmp")
    yield os.path.join(folder, "data")
    shutil.rmtree(folder, ignore_errors=True)


def test_uninterruptible_waits_are_selected_by_states(fsync_target: str) -> None:
    fsync_bin = build("offcpu_fsync", NOPIE)
    sleep_bin = build("offcpu_two_waits", NOPIE)
    argv_fsync = [str(fsync_bin), fsync_target, "300"]
    argv_sleep = [str(sleep_bin), "10", "30", "10"]

    # Frame pointers: this test is about state selection, and with tables the first waits
    # after the gate's exec are walked before the new image's tables are loaded (no_process):
    # a run of ~50 ms of waits can be mostly that window under load (CI once: 71 %).
    fp = {"unwind": "frame_pointers"}
    d_config = OffCpuConfig(states=["uninterruptible"], **fp)
    d_run = asyncio.run(_run(d_config, argv_fsync, argv_sleep))
    (fsync_pid, fsync_out), (sleep_pid, sleep_out) = d_run.outputs.items()
    # fsync's off-CPU time (its wall time less CPU time and run-queue delay, which the workload
    # measures) is D-state waiting for the disk; the sleeps are S: absent. That truth is
    # loose on a VM: on 2026-12-02 the D time found read 0.69-1.14 of it over a dozen runs, of
    # this tree and of the one before alike (none of the rest was in S: the S run below finds
    # under 5 %), where the day before it held 0.85 in every CI run. Time the vCPU loses to the
    # host (steal) while fsync runs is neither the thread's CPU time nor run-queue delay, so it
    # lands in the truth as sleep; hence 0.6, and the S-state exclusions stay strict.
    assert d_run.total(fsync_pid) >= 0.6 * fsync_out["fsync_sleep_ns"], (
        d_run.total(fsync_pid),
        fsync_out,
    )
    # The sleeps are S waits and must be absent. The sleeper may still wait in D for a moment
    # while exec faults its pages in from a disk the fsync workload keeps busy: allowed, as
    # long as none of it is in the sleeping functions and it is small.
    sleep_ranges = symbol_ranges(sleep_bin)
    for s in d_run.samples(sleep_pid):
        for fn in ("wait_long", "wait_short"):
            lo_fn, hi_fn = sleep_ranges[fn]
            assert not any(lo_fn <= a < hi_fn for a in s.user_stack), (fn, s)
    assert d_run.total(sleep_pid) <= 0.05 * (sleep_out["long_ns"] + sleep_out["short_ns"])
    ranges = symbol_ranges(fsync_bin)
    lo, hi = ranges["write_and_sync"]
    in_fn = sum(
        s.value for s in d_run.samples(fsync_pid) if any(lo <= a < hi for a in s.user_stack)
    )
    # fsync's measured D time is found under the function that calls it. (Not "nearly all of
    # the process's D time": exec's page faults and the final unlink can wait for the disk too,
    # 15 % of one CI run's.)
    others = sorted(
        (s.value, s.user_stack[:4], s.kernel_stack[:6])
        for s in d_run.samples(fsync_pid)
        if not any(lo <= a < hi for a in s.user_stack)
    )
    assert in_fn >= 0.6 * fsync_out["fsync_sleep_ns"], (in_fn, fsync_out, others[-5:])

    s_config = OffCpuConfig(states=["interruptible"], **fp)
    s_run = asyncio.run(_run(s_config, argv_fsync, argv_sleep))
    (fsync_pid, fsync_out), (sleep_pid, sleep_out) = s_run.outputs.items()
    assert s_run.total(fsync_pid) <= 0.05 * fsync_out["fsync_sleep_ns"], (
        s_run.total(fsync_pid),
        fsync_out,
    )
    truth = sleep_out["long_ns"] + sleep_out["short_ns"]
    assert abs(s_run.total(sleep_pid) - truth) <= 0.15 * truth


def test_waits_above_max_block_are_counted_not_reported() -> None:
    binary = build("offcpu_two_waits", NOPIE)
    run = asyncio.run(_run(OffCpuConfig(max_block="20ms"), [str(binary), "10", "30", "10"]))
    [(pid, out)] = run.outputs.items()
    long_ns, short_ns, _, _ = _split(run, pid, binary)
    assert long_ns == 0  # every 30 ms wait is above max_block
    assert abs(short_ns - out["short_ns"]) <= 0.15 * out["short_ns"]
    assert run.host.counters.get("offcpu", "above_max_block") >= 10
