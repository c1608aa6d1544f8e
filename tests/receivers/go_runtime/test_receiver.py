"""The go_runtime receiver's promises besides the numbers: the target never crashes, a non-Go
target gets one line while the others go on, and ``binary:`` finds processes started later."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time

import pytest

from collector.component import CreateSettings
from collector.golang import read_go_binary
from collector.host import Host
from receivers.go_runtime import factory
from tests.receivers.go_runtime import support
from tests.receivers.go_runtime.support import BUILDS, ListConsumer, build_id
from tests.support import gotoolchains

pytestmark = pytest.mark.bpf


async def _probe(config: dict, during) -> tuple[ListConsumer, Host]:  # type: ignore[no-untyped-def]
    consumer = ListConsumer()
    host = Host()
    cfg = factory.config_model.model_validate({"drain_interval": 0.2, **config})
    receiver = factory.create(
        CreateSettings("go_runtime", logging.getLogger("test.go_runtime"), consumer), cfg
    )
    await receiver.start(host)
    try:
        await during(host)
    finally:
        await receiver.shutdown()
    return consumer, host


@pytest.mark.parametrize("build", BUILDS, ids=build_id)
def test_stack_growth_under_every_probe_exits_zero(build: tuple[str, bool]) -> None:
    """Deep recursion copies goroutine stacks thousands of times while every signal's probes
    fire (mallocgc at the bottom of each grown stack, gopark/ready/execute around each
    goroutine): a uretprobe would crash it; RET uprobes must not."""
    version, stripped = build
    support.skip_unless_toolchain(version)
    binary = support.fixture("stackgrowth", version, stripped)
    expected = subprocess.run(
        [binary, "200"], input="\n", capture_output=True, text=True, timeout=300
    )
    assert expected.returncode == 0, expected.stderr
    proc = subprocess.Popen(
        [binary, "200"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    result: list[tuple[str, str]] = []

    async def during(host: Host) -> None:
        result.append(await asyncio.to_thread(proc.communicate, "\n", 600))

    consumer, host = asyncio.run(
        _probe({"pids": [proc.pid], "alloc_sampling": "mallocgc", "alloc_sample_bytes": 64}, during)
    )
    out, err = result[0]
    assert proc.returncode == 0, err
    assert "ready\n" + out == expected.stdout  # the same checksum: nothing was corrupted
    seen = {b.profile_type.name for b in consumer.batches if b.samples}
    counters = host.counters.snapshot().get("go_runtime", {})
    assert counters.get("targets_probed") == 1, counters
    assert {"goroutines", "go_alloc", "sched_latency"} <= seen, (seen, counters)
    # deep() yields at the bottom of its recursion (runtime.Gosched): goschedImpl walks the
    # yielding goroutine's stack from its saved context (g.sched), so its wait starts there
    yielded = [
        s for b in consumer.batches if b.profile_type.name == "sched_latency" for s in b.samples
    ]
    # (runtime.Gosched is inlined: the saved pc is in main.deep itself)
    deep = read_go_binary(str(binary), ["main.deep"]).functions["main.deep"]
    at_yield = [s for s in yielded if deep.start <= s.user_stack[0] < deep.start + deep.size]
    assert at_yield and max(len(s.user_stack) for s in at_yield) > 20


def test_non_go_target_is_one_line_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    support.skip_unless_toolchain(gotoolchains.LATEST)
    go_binary = support.fixture("fixture", gotoolchains.LATEST, True)
    not_go = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    go = support.start_fixture(go_binary, "50", "1", "10", "10", "0")
    try:
        assert go.stdout.readline().strip() == "ready"

        async def during(host: Host) -> None:
            go.stdin.write("\n")  # type: ignore[union-attr]
            go.stdin.flush()  # type: ignore[union-attr]
            assert (await asyncio.to_thread(go.stdout.readline)).strip() == "done"  # type: ignore[union-attr]

        with caplog.at_level(logging.WARNING, logger="test.go_runtime"):
            consumer, host = asyncio.run(_probe({"pids": [not_go.pid, go.pid]}, during))
        lines = [r.getMessage() for r in caplog.records if str(not_go.pid) in r.getMessage()]
        assert len(lines) == 1 and "is not a Go program" in lines[0], lines
        counters = host.counters.snapshot()["go_runtime"]
        assert counters["targets_skipped"] == 1 and counters["targets_probed"] == 1
        created = sum(
            s.value for b in consumer.batches if b.profile_type.name == "goroutines"
            for s in b.samples if s.pid == go.pid
        )  # fmt: skip
        assert created >= 50
    finally:
        not_go.kill()
        go.kill()
        not_go.wait()
        go.wait()


def test_binary_follows_processes_started_later() -> None:
    support.skip_unless_toolchain(gotoolchains.LATEST)
    binary = support.fixture("fixture", gotoolchains.LATEST, False)
    pids: list[int] = []

    async def during(host: Host) -> None:
        for i in range(2):  # two processes, both started after the receiver
            p = support.start_fixture(binary, "20", "1", "10", "10", "0")
            pids.append(p.pid)
            assert (await asyncio.to_thread(p.stdout.readline)).strip() == "ready"
            deadline = time.monotonic() + 60  # a hang guard, not a speed requirement
            while host.counters.get("go_runtime", "targets_probed") < i + 1:
                assert time.monotonic() < deadline, "the exec was never followed"
                await asyncio.sleep(0.05)
            out, _ = await asyncio.to_thread(p.communicate, "\n\n", 60)
            assert p.returncode == 0 and "done" in out
        await asyncio.sleep(0.5)

    consumer, _host = asyncio.run(_probe({"binary": str(binary)}, during))
    created: dict[int, int] = {}
    for b in consumer.batches:
        if b.profile_type.name == "goroutines":
            for s in b.samples:
                created[s.pid] = created.get(s.pid, 0) + s.value
    assert all(created.get(pid, 0) >= 20 for pid in pids), created
