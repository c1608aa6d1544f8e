"""One symbolizer per collector: two pipelines (cpu and off-CPU style) share symbol tables."""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
import time

from collector.model import ProfileType, RawBatch, RawSample, cpu_profile_type
from processors.symbolize import factory as symbolize
from processors.symbolize.shared import KERNEL_KEY, KernelTable
from tests.collector.pipeline.graph import Graph

OFF_CPU = ProfileType("off_cpu", "off_cpu", "nanoseconds")


def _kernel_text_addresses(n: int) -> list[tuple[int, str]]:
    """``n`` kernel functions with an address of their own (no alias), [] when hidden."""
    names: dict[int, list[str]] = {}
    with open("/proc/kallsyms") as f:
        for line in f:
            addr, kind, name = line.split()[:3]
            if kind in "tT" and int(addr, 16) and not name.startswith("__pfx_"):
                names.setdefault(int(addr, 16), []).append(name)
    unique = [(a, ns[0]) for a, ns in sorted(names.items()) if len(ns) == 1]
    return unique[len(unique) // 2 : len(unique) // 2 + n]


def _raw(pt: ProfileType, kernel: list[int]) -> RawBatch:
    """Samples of this very process: libc's getpid under a few kernel functions."""
    getpid = ctypes.cast(ctypes.CDLL(None).getpid, ctypes.c_void_p).value
    assert getpid is not None
    now = time.time_ns()
    samples = [
        RawSample(
            os.getpid(),
            threading.get_native_id(),
            0,
            "pytest",
            now + i,
            1,
            user_stack=(getpid,),
            kernel_stack=tuple(kernel),
        )
        for i in range(50)
    ]
    return RawBatch(pt, samples)


def test_two_pipelines_load_kallsyms_once_and_share_one_symbolizer() -> None:
    kernel = _kernel_text_addresses(3)
    g = Graph()
    g.add("receiver", "cpu", output="raw")
    g.add("receiver", "offcpu", output="raw")
    g.add("receiver", "other", output="raw")
    g.add("exporter", "e", input="profiles")
    same = g.add_real("processor", "symbolize", symbolize, symbolize.config_model())
    # Different settings: an own symbolizer, but the same kernel table.
    other = g.add_real(
        "processor", "symbolize/raw", symbolize, symbolize.config_model(demangle=False)
    )
    g.pipeline("profiles/cpu", ["cpu"], ["e"], processors=["symbolize"])
    g.pipeline("profiles/offcpu", ["offcpu"], ["e"], processors=["symbolize"])
    g.pipeline("profiles/other", ["other"], ["e"], processors=["symbolize/raw"])
    svc = g.build()

    async def main() -> None:
        await svc.start()
        a, b = same  # one processor object per pipeline
        assert a is not b and a.symbolizer is b.symbolizer  # one symbolizer for both
        assert other[0].symbolizer is not a.symbolizer
        assert other[0].symbolizer.kernel is a.symbolizer.kernel  # one kernel table
        addrs = [addr + 8 for addr, _ in kernel]  # inside each: callers are looked up at -1
        g.made["cpu"].consume(_raw(cpu_profile_type(99), addrs))
        g.made["offcpu"].consume(_raw(OFF_CPU, addrs))
        g.made["other"].consume(_raw(cpu_profile_type(99), addrs))
        await svc.shutdown()

    asyncio.run(main())
    c = svc.host.counters
    loads = [c.get(f"processors/{p}", "kallsyms_loads") for p in ("symbolize", "symbolize/raw")]
    assert sum(loads) == 1
    sets = g.made["e"].sets
    assert sum(ps.sample_count for ps in sets) == 150
    for ps in sets:  # resolved for real: libc's getpid, and the kernel functions by name
        names = {ln.function.name for loc in ps.dictionary.locations for ln in loc.lines}
        assert "getpid" in names or "__getpid" in names, names
        if kernel:
            assert {name for _, name in kernel} <= names
    # Released at shutdown: the next user gets a fresh table.
    fresh = svc.host.shared(KERNEL_KEY, KernelTable)
    assert fresh.loads == 0
