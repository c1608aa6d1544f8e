"""One deduplication per pipeline: every exporter of a window setting gets the same ProfileSet."""

from __future__ import annotations

import asyncio
import time

import pytest

from collector.encoding import folded_totals
from collector.model import ProfileSet, ProfileWindows, SymbolizedBatch, WindowSettings
from collector.pipeline import Service
from tests.collector.pipeline.graph import Graph
from tests.support.encoding_samples import CPU, EXPECTED_FOLDED, OFF_CPU, batch

HOUR = WindowSettings(3600)  # windows close at shutdown only, unless full


def _run(svc: Service, feed: dict[str, list[SymbolizedBatch]], graph: Graph) -> None:
    async def main() -> None:
        await svc.start()
        for rid, batches in feed.items():
            for b in batches:
                assert graph.made[rid].consume(b)
        await svc.shutdown()

    asyncio.run(main())


def _samples(sets: list[ProfileSet]) -> int:
    return sum(ps.sample_count for ps in sets)


def test_full_windows_close_early_and_nothing_is_lost() -> None:
    w = ProfileWindows(max_samples=10)
    full = w.add(batch(CPU, scale=2))  # 30 samples
    assert [ps.sample_count for ps in full] == [10, 10, 10]
    assert len(w) == 0 and w.close_all() == []
    more = w.add(batch(CPU))  # 15 samples: one full window, 5 left open
    assert [ps.sample_count for ps in more] == [10] and len(w) == 5
    rest = w.close(CPU)
    assert rest is not None and rest.sample_count == 5
    assert all(ps.dropped_samples == 0 for ps in [*full, *more, rest])
    assert w.close(CPU) is None  # an empty window gives nothing


def test_one_profile_set_reaches_every_exporter_of_a_window() -> None:
    g = Graph()
    g.add("receiver", "r", output="symbolized")
    g.add("exporter", "folded", input="profiles")  # default window settings: equal
    g.add("exporter", "pprof", input="profiles")
    g.add("exporter", "plugin", input="symbolized")  # a third-party exporter of batches
    g.pipeline("profiles", ["r"], ["folded", "pprof", "plugin"])
    svc = g.build()
    batches = [batch(CPU), batch(CPU, scale=2), batch(OFF_CPU, value=7)]
    _run(svc, {"r": batches}, g)
    a, b = g.made["folded"].sets, g.made["pprof"].sets
    assert len(a) == 2 and all(x is y for x, y in zip(a, b, strict=True))  # identity
    assert [ps.profile_type for ps in a] == [CPU, OFF_CPU]
    assert _samples(a) == _samples(b) == 60
    assert folded_totals(a[1]) == {k: v * 7 for k, v in EXPECTED_FOLDED.items()}
    assert g.made["plugin"].items == batches  # the batches themselves, in order
    assert svc.host.counters.get("pipelines/profiles", "windows_closed") == 2
    with pytest.raises(AttributeError):
        a[0].start_ns = 0  # type: ignore[misc]  # frozen: shared, so never changed


def test_distinct_window_settings_get_a_window_each_and_full_ones_close_early() -> None:
    g = Graph()
    g.add("receiver", "r", output="symbolized")
    g.add("exporter", "small", input="profiles", window=WindowSettings(3600, max_samples=10))
    g.add("exporter", "big", input="profiles", window=HOUR)
    g.add("exporter", "big2", input="profiles", window=HOUR)
    g.pipeline("profiles", ["r"], ["small", "big", "big2"])
    svc = g.build()
    _run(svc, {"r": [batch(CPU), batch(CPU, scale=2)]}, g)
    small, big = g.made["small"].sets, g.made["big"].sets
    assert [ps.sample_count for ps in small] == [10, 10, 10, 10, 5]
    assert [ps.sample_count for ps in big] == [45]
    assert big[0] is g.made["big2"].sets[0]
    counters = svc.host.counters
    assert counters.get("pipelines/profiles", "windows_closed_full") == 4
    assert counters.get("pipelines/profiles", "windows_closed") == 6


def test_an_exporter_in_two_pipelines_gets_each_pipelines_sets() -> None:
    g = Graph()
    g.add("receiver", "cpu", output="symbolized")
    g.add("receiver", "offcpu", output="symbolized")
    g.add("exporter", "e", input="profiles")
    g.pipeline("profiles/cpu", ["cpu"], ["e"])
    g.pipeline("profiles/offcpu", ["offcpu"], ["e"])
    svc = g.build()
    _run(svc, {"cpu": [batch(CPU)], "offcpu": [batch(OFF_CPU, value=3)]}, g)
    got = {ps.profile_type.name: ps.sample_count for ps in g.made["e"].sets}
    assert got == {"cpu": 15, "off_cpu": 15}


def test_the_timer_closes_windows_while_running() -> None:
    g = Graph()
    g.add("receiver", "r", output="symbolized")
    g.add("exporter", "e", input="profiles", window=WindowSettings(0.1))
    g.pipeline("profiles", ["r"], ["e"])
    svc = g.build()

    async def main() -> int:
        await svc.start()
        g.made["r"].consume(batch(CPU))
        deadline = time.monotonic() + 30
        while not g.made["e"].sets and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        seen = len(g.made["e"].sets)
        await svc.shutdown()
        return seen

    assert asyncio.run(main()) == 1
    assert _samples(g.made["e"].sets) == 15  # and shutdown found nothing more to send


def test_shutdown_hands_the_last_windows_on_before_exporters_stop() -> None:
    g = Graph()
    g.add("receiver", "r", output="symbolized")
    g.add("processor", "p", input="symbolized", output="symbolized")
    g.add("exporter", "e", input="profiles", window=HOUR)
    g.pipeline("profiles", ["r"], ["e"], processors=["p"])
    svc = g.build()
    _run(svc, {"r": [batch(CPU), batch(OFF_CPU)]}, g)
    j = [x for x in g.journal if not x.startswith("start")]
    assert j == [
        "shutdown r",
        "shutdown p",
        "export e set",  # cpu
        "export e set",  # off_cpu
        "shutdown e",
    ]
    assert _samples(g.made["e"].sets) == 30


def test_what_the_deadline_cuts_off_is_counted() -> None:
    g = Graph()
    g.blocks["e"] = asyncio.Event()  # never set: the exporter never finishes an export
    g.add("receiver", "r", output="symbolized")
    g.add("exporter", "e", input="profiles", window=HOUR)
    g.pipeline("profiles", ["r"], ["e"])
    svc = g.build(shutdown_timeout=0.3)
    _run(svc, {"r": [batch(CPU), batch(OFF_CPU, scale=2)]}, g)
    c = svc.host.counters
    assert g.made["e"].items == []
    # One set was held by the exporter, the other still queued: both counted, all 45.
    assert c.get("exporters/e", "samples_dropped_at_shutdown") == 45
