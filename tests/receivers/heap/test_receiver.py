"""The heap receiver on the real kernel: targets found by binary (also started after the
collector), a target without its allocator, and a target's exit freeing its state.

tests/workloads/heap_leak.c leaks 4 KiB per call from leak() and churns small blocks; it waits
for a line on stdin before allocating and keeps its memory until stdin closes.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from collector.component import CreateSettings
from collector.host import Host
from collector.model import RawBatch
from receivers.heap import factory
from receivers.heap.config import HeapConfig
from tests.support.workloads import build

pytestmark = pytest.mark.bpf


class ListConsumer:
    def __init__(self) -> None:
        self.batches: list[RawBatch] = []

    def consume(self, batch: RawBatch) -> bool:
        self.batches.append(batch)
        return True


def start_workload(binary: Path, seconds: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(binary), str(seconds)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def go(wl: subprocess.Popen[str]) -> int:
    """Let the workload run; the bytes it leaked."""
    assert wl.stdin is not None and wl.stdout is not None
    wl.stdin.write("go\n")
    wl.stdin.flush()
    words = wl.stdout.readline().split()
    return int(words[words.index("leaked_bytes") + 1])


def inuse(batches: list[RawBatch], pid: int) -> int:
    return sum(s.more[2] for b in batches for s in b.samples if s.pid == pid)


async def wait_until(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def test_binary_target_started_later_then_its_exit_frees_everything() -> None:
    binary = build("heap_leak")
    consumer, host = ListConsumer(), Host()
    config = HeapConfig(binary=str(binary), sample_bytes=32768, interval=1.0, min_age=None)
    rec = factory.create(CreateSettings("heap", logging.getLogger("t"), consumer), config)

    async def scenario() -> tuple[int, int]:
        await rec.start(host)
        try:
            wl = start_workload(binary, 1.5)  # after the receiver: attached at its exec
            await wait_until(lambda: rec._probes.attached(wl.pid))
            leaked = await asyncio.to_thread(go, wl)
            n = len(consumer.batches)
            await wait_until(lambda: len(consumer.batches) > n + 1)  # a window after the run
            held = inuse(consumer.batches[-1:], wl.pid)
            assert wl.stdin is not None
            wl.stdin.close()
            wl.wait()
            # The reader thread frees its blocks and closes its probes at the exit event.
            await wait_until(
                lambda: not rec._probes.attached(wl.pid) and rec._state.live(wl.pid) == 0
            )
            n = len(consumer.batches)
            assert rec._prog.map("outstanding").keys() == []  # and the kernel's copy
        finally:
            await rec.shutdown()
        assert inuse(consumer.batches[n:], wl.pid) == 0  # its blocks are gone with it
        return leaked, held

    leaked, held = asyncio.run(scenario())
    assert abs(held - leaked) < 0.25 * leaked, (held, leaked)
    assert host.counters.get("heap", "ringbuf_full") == 0


def test_a_target_without_its_allocator_is_one_line_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="heap-static-"))
    src = tmp / "static.c"
    src.write_text("#include <unistd.h>\nint main(void) { pause(); return 0; }\n")
    static = tmp / "static"
    subprocess.run(["gcc", "-static", "-o", str(static), str(src)], check=True)
    lone = subprocess.Popen([str(static)])
    wl = start_workload(build("heap_leak"), 1.0)
    time.sleep(0.2)  # both have run their loader
    consumer, host = ListConsumer(), Host()
    config = HeapConfig(pids=[lone.pid, wl.pid], sample_bytes=32768, interval=3600)
    rec = factory.create(CreateSettings("heap", logging.getLogger("t.heap"), consumer), config)

    async def scenario() -> int:
        await rec.start(host)
        try:
            return await asyncio.to_thread(go, wl)
        finally:
            await rec.shutdown()

    try:
        with caplog.at_level(logging.INFO, logger="t.heap"):
            leaked = asyncio.run(scenario())
    finally:
        lone.kill()
        assert wl.stdin is not None
        wl.stdin.close()
        wl.wait()
        lone.wait()
    lines = [r.getMessage() for r in caplog.records if f"pid={lone.pid}" in r.getMessage()]
    assert len(lines) == 1 and "not profiled" in lines[0] and "libc.so.6" in lines[0], lines
    assert host.counters.get("heap", "targets_failed") == 1
    assert host.counters.get("heap", "targets_attached") == 1
    held = inuse(consumer.batches, wl.pid)
    assert abs(held - leaked) < 0.25 * leaked, (held, leaked)


def test_a_target_that_execs_is_profiled_in_its_new_image() -> None:
    """pids: a shell that execs the workload keeps its pid; its old heap is forgotten and the
    new image is attached again once its loader has mapped libc."""
    binary = build("heap_leak")
    sh = subprocess.Popen(
        ["/bin/sh", "-c", f"read line; exec {binary} 1.0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.2)
    consumer, host = ListConsumer(), Host()
    config = HeapConfig(pids=[sh.pid], sample_bytes=32768, interval=3600, min_age=None)
    rec = factory.create(CreateSettings("t.exec", logging.getLogger("t.exec"), consumer), config)

    async def scenario() -> int:
        await rec.start(host)
        try:
            assert rec._probes.attached(sh.pid)
            assert sh.stdin is not None
            sh.stdin.write("exec now\n")  # read by the shell, which then execs
            sh.stdin.flush()
            await wait_until(lambda: host.counters.get("t.exec", "targets_attached") >= 2)
            return await asyncio.to_thread(go, sh)
        finally:
            await rec.shutdown()

    try:
        leaked = asyncio.run(scenario())
    finally:
        assert sh.stdin is not None
        sh.stdin.close()
        sh.wait()
    held = inuse(consumer.batches, sh.pid)
    assert abs(held - leaked) < 0.25 * leaked, (held, leaked)
    comms = {s.comm for b in consumer.batches for s in b.samples if s.more[2]}
    assert comms == {"heap_leak"}, comms


def test_a_full_outstanding_map_is_counted_and_allocations_still_are() -> None:
    wl = start_workload(build("heap_leak"), 1.0)
    time.sleep(0.2)
    consumer, host = ListConsumer(), Host()
    config = HeapConfig(
        pids=[wl.pid], sample_bytes=4096, interval=3600, min_age=None, outstanding_map_size=64
    )
    rec = factory.create(CreateSettings("full", logging.getLogger("t.full"), consumer), config)

    async def scenario() -> int:
        await rec.start(host)
        try:
            return await asyncio.to_thread(go, wl)
        finally:
            await rec.shutdown()

    try:
        leaked = asyncio.run(scenario())
    finally:
        assert wl.stdin is not None
        wl.stdin.close()
        wl.wait()
    assert host.counters.get("full", "outstanding_map_full") > 0, host.counters.snapshot()
    held = inuse(consumer.batches, wl.pid)
    assert 0 < held < 0.5 * leaked  # at most 64 blocks are known to be in use
    allocated = sum(s.more[0] for b in consumer.batches for s in b.samples if s.pid == wl.pid)
    assert allocated > 0.8 * leaked  # every sampled allocation still counts as allocated
