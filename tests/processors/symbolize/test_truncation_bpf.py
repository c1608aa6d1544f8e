"""Real samples of Debian's xz (built -O2, no frame pointers) through the real cpu receiver
and the symbolizer: every stack that stops before its outermost frame carries a marker, and
the counter equals the number of samples carrying one (the issue saw about 60% of xz samples
as an unmarked lone leaf, and a counter three times too low for python3.11)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from collector.component import CreateSettings
from collector.host import Host
from collector.model import RawBatch
from processors.symbolize import SymbolizeConfig, Symbolizer
from processors.symbolize.markers import OUTERMOST, TRUNCATION_COUNTERS
from receivers.cpu import factory
from receivers.cpu.config import CpuConfig

pytestmark = pytest.mark.bpf


class _Consumer:
    def __init__(self) -> None:
        self.batches: list[RawBatch] = []

    def consume(self, batch: RawBatch) -> bool:
        self.batches.append(batch)
        return True


async def _profile(host: Host, argv: list[str], unwind: str) -> list[RawBatch]:
    consumer = _Consumer()
    cfg = CpuConfig(frequency=199, comm="^xz$", unwind=unwind)
    receiver = factory.create(
        CreateSettings(id="cpu", logger=logging.getLogger("test"), consumer=consumer), cfg
    )
    await receiver.start(host)
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.DEVNULL)
    await proc.wait()
    await asyncio.sleep(0.3)
    await receiver.shutdown()
    return consumer.batches


# frame_pointers: where the undercount lived (most xz samples are lone leaves there);
# auto: the table unwinder, whose early stops carry their reason as a marker too.
@pytest.mark.parametrize("unwind", ["frame_pointers", "auto"])
def test_xz_stacks_are_marked_and_every_marked_sample_counted(tmp_path: Path, unwind: str) -> None:
    xz = shutil.which("xz")
    if xz is None:
        pytest.skip("xz is not installed")
    data = tmp_path / "data"
    # Compressible but not trivial: text with random words, a few seconds of xz -9 on one core.
    words = [os.urandom(3).hex() for _ in range(4096)]
    data.write_text(" ".join(words[i * 7919 % 4096] for i in range(8_000_000)))
    host = Host()
    batches = asyncio.run(_profile(host, [xz, "-9", "-T1", "-c", str(data)], unwind))
    sym = Symbolizer(
        host.processes,
        SymbolizeConfig(kernel=False, symcache_dir=str(tmp_path / "cache")),
        host.counters,
    )
    samples = [s for b in batches for s in sym.symbolize(b).samples]
    assert len(samples) > 100
    marked = 0
    for s in samples:
        frames = s.stack.frames
        if not frames:
            continue  # a kernel-only sample with kernel frames off
        if id(frames[-1]) in TRUNCATION_COUNTERS:
            marked += 1
            continue
        user = [f for f in frames if f.frame_type != "kernel"]
        if len(user) == 1:  # an unmarked lone frame must be a thread's first function
            assert user[0].label() in OUTERMOST or user[0].label().startswith("[missing")
    assert host.counters.get("symbolize", "stack_truncated") == marked
    by_reason = {
        name: n
        for name in set(TRUNCATION_COUNTERS.values())
        if (n := host.counters.get("symbolize", name))
    }
    assert sum(by_reason.values()) == marked, by_reason
    print(f"xz unwind={unwind}: {len(samples)} samples, marked {marked}: {by_reason}")
