"""The go_runtime receiver's reader failing, on the real kernel: the rules of
collector/bpf/reader.py (shared with cpu, offcpu and heap). An optional receiver whose reader
fails removes its uprobes from the target at once, and the Go program runs on to a clean exit.

A fault is injected into the live ring buffer's poll (tests/support/ring_faults.py); the
program, its uprobes and the target are real.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from collector.component import CreateSettings
from collector.host import Host
from receivers.go_runtime import factory
from tests.receivers.go_runtime import support
from tests.receivers.go_runtime.support import ListConsumer
from tests.support import gotoolchains
from tests.support.ring_faults import fail_ring

pytestmark = pytest.mark.bpf


def test_an_optional_receiver_fails_alone_and_unprobes_its_target() -> None:
    support.skip_unless_toolchain(gotoolchains.LATEST)
    binary = support.fixture("fixture", gotoolchains.LATEST, False)
    fatal: list[tuple[str, str]] = []
    host = Host()
    host.on_fatal(lambda c, m: fatal.append((c, m)))
    consumer = ListConsumer()
    p = support.start_fixture(binary, "20", "1", "10", "10", "0")
    assert p.stdout.readline().strip() == "ready"
    cfg = factory.config_model.model_validate(
        {"pids": [p.pid], "drain_interval": 0.2, "optional": True}
    )
    rec = factory.create(CreateSettings("go_runtime", logging.getLogger("t"), consumer), cfg)

    def count(name: str) -> int:
        return host.counters.get("go_runtime", name)

    async def main() -> None:
        await rec.start(host)
        try:
            assert p.pid in rec._targets.traced
            fail_ring(rec, "poll", lambda _n: count("bpf_events") > 0)  # once records flow
            p.stdin.write("\n")  # the first phase: goroutines are created
            p.stdin.flush()
            deadline = time.monotonic() + 60  # a hang guard, not a speed requirement
            while not count("receiver_failed"):
                assert time.monotonic() < deadline, "the reader never failed"
                await asyncio.sleep(0.05)
            await asyncio.to_thread(rec._thread.join, 30)
            assert not rec._thread.is_alive()
            # Released by the reader itself, before shutdown: uprobes, program, maps.
            assert rec._targets.traced == {}
            assert all(a["fd"] == -1 for a in rec._prog.attachments)
            assert all(m.fd == -1 for m in rec._prog.maps.values())
        finally:
            await rec.shutdown()
            await rec.shutdown()  # idempotent

    try:
        asyncio.run(main())
        out, _ = p.communicate("\n\n", 60)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == 0 and "done" in out  # the target never noticed
    assert not fatal and host.fatal_error is None
    assert count("receiver_failed") == 1
    assert count("targets_probed") == 1
