"""The flame graph page in a real browser (headless Chromium over the DevTools protocol).

Opened from file:// with no network: the test finds the functions in the rendered page,
clicks a frame and checks it then spans the full width, hovers, searches, resets, and turns
on the differential colouring. Without chromium the test skips (fails in CI).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from collector.host import Host
from collector.model import ProfileBuilder
from exporters.flamegraph import factory
from tests.support import encoding_samples as es
from tests.support.browser import Browser, require_chromium
from tests.support.flamegraph_page import CHART_WIDTH, frame, settled, until
from tests.support.otlp_run import create


def write_windows(tmp_path: Path) -> Path:
    async def go() -> None:
        exp = create(factory, {"directory": str(tmp_path)})
        await exp.start(Host())
        await exp.export(es.profile_set())
        b = ProfileBuilder(es.CPU)  # the second window: only the app, twice as much
        b.add_all(s for s in es.samples(scale=2) if s.process is es.APP_PROC)
        await exp.export(b.build())
        await exp.shutdown()

    asyncio.run(go())
    return sorted(tmp_path.glob("cpu-*.html"))[-1]


def test_page_in_chromium(tmp_path: Path) -> None:
    require_chromium()
    html_file = write_windows(tmp_path)

    async def go() -> None:
        async with Browser() as b:
            page = await b.open(html_file.as_uri())
            await page.wait_for("document.body.dataset.ready === '1'")
            names = await page.evaluate(
                "[...document.querySelectorAll('#chart g.frame')].map(g => g.getAttribute('name'))"
            )
            for fn in ("all", "app", "main", "work", "compute", "square", "ksys_write"):
                assert fn in names, names
            assert "sleeper" not in names  # not in this window
            # nothing was fetched: every script and the data are inline
            assert await page.evaluate("performance.getEntriesByType('resource').length") == 0
            width = await page.evaluate(CHART_WIDTH)
            root = await settled(page, "all", width)
            before = await frame(page, "compute")
            assert before is not None and before["w"] < 0.6 * width
            # click: the frame spans the full width after the zoom transition
            await page.click(before["x"] + before["w"] / 2, before["y"] + before["h"] / 2)
            after = await settled(page, "compute", width)
            assert after["x"] <= root["x"] + 1
            # hover details
            sq = await frame(page, "square")
            assert sq is not None
            await page.call(
                "Input.dispatchMouseEvent", type="mouseMoved", x=sq["x"] + 5, y=sq["y"] + 5
            )
            details = await page.wait_for("document.getElementById('details').textContent")
            assert details.startswith("square (") and "samples" in details
            # reset zoom
            await page.evaluate("document.getElementById('reset').click()")
            back = await settled(page, "compute", before["w"])
            assert abs(back["x"] - before["x"]) < 1
            # search highlights matching frames
            await page.evaluate(
                "(() => { const s = document.getElementById('search'); s.value = 'squ';"
                " s.dispatchEvent(new Event('input')); })()"
            )
            await until(page, "square", "b.fill.toUpperCase() === '#E600E6'")
            assert "search:" in await page.evaluate(
                "document.getElementById('details').textContent"
            )
            await page.evaluate("document.getElementById('clear').click()")
            # differential colouring against the previous window: all of the app grew
            # (the sleeper's share went to it), so app's frame is reddish, not grey
            await page.evaluate("document.getElementById('diff').click()")
            grown = await until(page, "app", "b.fill.startsWith('rgb(220,')")
            r, g, bl = (int(v) for v in grown["fill"][4:-1].split(","))
            assert r > g and r > bl, grown
            await page.screenshot(tmp_path / "flamegraph.png")
            assert (tmp_path / "flamegraph.png").stat().st_size > 10_000

    asyncio.run(go())
