"""A batch that ends its receiver's window (window_end) closes the pipeline's window of its
type at once: two heap snapshots never land in one profile, where their in-use values would
be summed. Ground truth: each snapshot's in-use bytes, exactly, one ProfileSet each."""

from __future__ import annotations

import asyncio

from collector.model import ProfileSet, Stack, SymbolizedBatch, WindowSettings
from collector.pipeline.windowing import WindowStage
from tests.support.encoding_samples import CPU, HEAP, L_MAIN, batch, heap_sample


def _snapshot(inuse: int, t: int) -> SymbolizedBatch:
    return SymbolizedBatch(
        HEAP, [heap_sample(Stack((L_MAIN,)), t, 0, (0, 1, inuse))], "heap", window_end=True
    )


def test_each_receiver_cut_window_is_its_own_profile() -> None:
    got: list[ProfileSet] = []

    async def sink(ps: ProfileSet) -> None:
        got.append(ps)

    async def go() -> None:
        stage = WindowStage("p", WindowSettings(interval=3600), sink)
        stage.start()
        await stage.add(batch(CPU))  # a timer-windowed type stays open
        await stage.add(_snapshot(4096, 1))
        await stage.add(_snapshot(8192, 2))
        assert len(got) == 2 and len(stage) == len(batch(CPU).samples)
        await stage.shutdown()

    asyncio.run(go())
    heap = [ps for ps in got if ps.profile_type == HEAP]
    inuse = [sum(r.totals(4)[3] for p in ps.processes for r in p.samples) for ps in heap]
    assert inuse == [4096, 8192]
    assert [ps.profile_type for ps in got] == [HEAP, HEAP, CPU]  # CPU at shutdown
