"""Go fixtures built with every toolchain tests/support/gotoolchains.py offers, run under the
real go_runtime receiver, and symbolized by the real symbolize processor."""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from collector.component import CreateSettings
from collector.host import Host
from collector.model import RawBatch
from collector.model.symbolized import Sample, SymbolizedBatch
from processors.symbolize import factory as symbolize_factory
from receivers.go_runtime import factory
from tests.support import gotoolchains

TESTDATA = Path(__file__).parent / "testdata"
OUT = Path("/tmp/collector-go-runtime-fixtures")
BUILDS = [(v, s) for v in gotoolchains.VERSIONS for s in (False, True)]


def build_id(param: tuple[str, bool]) -> str:
    return f"go{param[0]}{'-stripped' if param[1] else ''}"


def fixture(name: str, version: str, stripped: bool, pie: bool = False) -> Path:
    """tests/receivers/go_runtime/testdata/<name>.go built with ``version`` (cached);
    ``pie``: -buildmode=pie (Go links it at 0x400000 and the kernel moves it)."""
    gotoolchains.require(version)
    src = TESTDATA / f"{name}.go"
    out = OUT / version / (name + ("-stripped" if stripped else "") + ("-pie" if pie else ""))
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        flags = ("-buildmode=pie",) if pie else ()
        gotoolchains.build(src, out, version, stripped=stripped, extra_flags=flags)
    return out


def start_fixture(binary: Path, *args: str) -> subprocess.Popen[str]:
    """Start a fixture with its stdin and stdout piped as text (it prints "ready", then
    waits for a line on stdin between phases)."""
    p = subprocess.Popen(
        [binary, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )  # fmt: skip
    assert p.stdin is not None and p.stdout is not None
    return p


class ListConsumer:
    def __init__(self) -> None:
        self.batches: list[RawBatch] = []

    def consume(self, batch: RawBatch) -> bool:
        self.batches.append(batch)
        return True


@dataclass
class Result:
    returncode: int
    output: str
    raw: list[RawBatch]
    symbolized: list[SymbolizedBatch]
    counters: dict[str, int]
    pid: int

    def samples(self, profile: str) -> list[Sample]:
        return [
            s
            for b in self.symbolized
            if b.profile_type.name == profile
            for s in b.samples
            if s.process.pid == self.pid
        ]

    def total(self, profile: str, under: str | None = None, column: int = 0) -> int:
        """Sum of value (column 0) or more[column-1] of the samples whose stack holds ``under``."""
        out = 0
        for s in self.samples(profile):
            if under is None or under in names(s):
                out += s.value if column == 0 else s.more[column - 1]
        return out


def names(sample: Sample) -> list[str]:
    """Function names of a sample's stack, leaf first, inlined frames included."""
    return [ln.function.name for loc in sample.stack.frames for ln in loc.lines]


def lines(sample: Sample) -> list[tuple[str, int]]:
    return [(ln.function.name, ln.line) for loc in sample.stack.frames for ln in loc.lines]


@dataclass
class Phases:
    """The fixture's arguments and what the test does between its phases."""

    argv: list[str]
    settle_s: float = 1.0  # after "done", before the receiver stops
    config: dict = field(default_factory=dict)


async def _run(binary: Path, phases: Phases) -> Result:
    log = logging.getLogger("test.go_runtime")
    proc = subprocess.Popen(
        [str(binary), *phases.argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        first = proc.stdout.readline().strip()
        assert first == "ready", first
        consumer = ListConsumer()
        host = Host()
        config = factory.config_model.model_validate(
            {"pids": [proc.pid], "drain_interval": 0.2, **phases.config}
        )
        receiver = factory.create(CreateSettings("go_runtime", log, consumer), config)
        await receiver.start(host)
        try:
            proc.stdin.write("\n")
            proc.stdin.flush()
            done = await asyncio.to_thread(proc.stdout.readline)
            assert done.strip() == "done", done
            await asyncio.sleep(phases.settle_s)
        finally:
            await receiver.shutdown()  # the last live snapshot: the process still runs
        proc.stdin.write("\n")
        proc.stdin.flush()
        rest = await asyncio.to_thread(proc.stdout.read)
        rc = await asyncio.to_thread(proc.wait, 60)
        symbolize = symbolize_factory.create(
            CreateSettings("symbolize", log), symbolize_factory.config_model()
        )
        await symbolize.start(host)
        try:
            out = [await symbolize.process(b) for b in consumer.batches]
        finally:
            await symbolize.shutdown()
        counters: dict[str, int] = defaultdict(int)
        for b in consumer.batches:
            for k, v in b.counters.items():
                counters[k] += v
        return Result(
            rc, first + "\n" + done + rest, consumer.batches, [b for b in out if b], counters,
            proc.pid,
        )  # fmt: skip
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run(binary: Path, phases: Phases) -> Result:
    return asyncio.run(_run(binary, phases))


def skip_unless_toolchain(version: str) -> None:
    if version not in gotoolchains.toolchains():
        pytest.skip(f"Go {version} is not installed (scripts/setup.sh test installs it)")
