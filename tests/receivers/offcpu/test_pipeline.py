"""offcpu -> symbolize -> pprof, read back by `go tool pprof`: what a user sees end to end.

The split between wait_long and wait_short is checked again, now through real symbolization
and an independent pprof reader, together with the sample type `off_cpu/nanoseconds`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
from pathlib import Path

import pytest

from collector.component import CreateSettings
from collector.host import Host
from exporters.pprof import factory as pprof_factory
from processors.symbolize import factory as symbolize_factory
from receivers.offcpu import factory as offcpu_factory
from receivers.offcpu.config import OffCpuConfig
from tests.support.encoding_pprof import go_pprof
from tests.support.workloads import build

pytestmark = pytest.mark.bpf


class Pipe:
    """Hands each raw batch through the symbolizer to the exporter, in order."""

    def __init__(self, symbolize, exporter) -> None:  # type: ignore[no-untyped-def]
        self.symbolize = symbolize
        self.exporter = exporter
        self.tasks: list[asyncio.Task] = []

    def consume(self, batch) -> bool:  # type: ignore[no-untyped-def]
        self.tasks.append(asyncio.get_running_loop().create_task(self._one(batch)))
        return True

    async def _one(self, batch) -> None:  # type: ignore[no-untyped-def]
        out = await self.symbolize.process(batch)
        if out is not None:
            await self.exporter.export(out)


async def _profile(out_dir: Path, binary: Path) -> int:
    log = logging.getLogger("test")
    host = Host()
    exporter = pprof_factory.create(
        CreateSettings("pprof", log),
        pprof_factory.config_model.model_validate({"directory": out_dir, "interval": 60}),
    )
    symbolize = symbolize_factory.create(
        CreateSettings("symbolize", log), symbolize_factory.config_model()
    )
    pipe = Pipe(symbolize, exporter)
    receiver = offcpu_factory.create(CreateSettings("offcpu", log, pipe), OffCpuConfig())
    await exporter.start(host)
    await symbolize.start(host)
    await receiver.start(host)
    proc = await asyncio.create_subprocess_exec(
        str(binary), "25", "30", "10", stdout=subprocess.PIPE
    )
    await proc.communicate()
    await receiver.shutdown()
    await asyncio.gather(*pipe.tasks)
    await symbolize.shutdown()
    await exporter.shutdown()
    return proc.pid


def test_pprof_shows_off_cpu_nanoseconds_split_between_the_waits(tmp_path: Path) -> None:
    binary = build("offcpu_two_waits", ("-no-pie",))
    pid = asyncio.run(_profile(tmp_path, binary))
    [path] = sorted(tmp_path.glob("off_cpu*.pb.gz"))
    top = go_pprof(path, "-top", f"-tagfocus=pid={pid}")
    assert "Type: off_cpu" in top, top
    cum = {}
    for line in top.splitlines():
        m = re.match(r"\s*\S+\s+\S+\s+\S+\s+(\d+(?:\.\d+)?)(\w+)\s+\S+\s+(\w+)$", line)
        if m:
            scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]
            cum[m.group(3)] = float(m.group(1)) * scale
    share = cum["wait_long"] / (cum["wait_long"] + cum["wait_short"])
    assert abs(share - 0.75) <= 0.05, top
    raw = go_pprof(path, "-raw")
    assert "off_cpu/nanoseconds" in raw, raw[:500]
    assert "states=interruptible+uninterruptible" in raw, raw[:500]  # the profile's notes
