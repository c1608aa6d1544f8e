"""Ground truth in a real browser: the flame graph the real CLI wrote for cpu_shares
(60/30/10 % in burn_a/b/c, cpu receiver -> symbolize -> flamegraph; the run is shared with
the pyroscope ground-truth test, tests/support/ground_truth_run.py) opened in headless
Chromium: the workload's functions are on the page with widths matching their shares, a
click on burn_a makes it span the full width, and a screenshot is taken.

``FLAMEGRAPH_SCREENSHOT=docs/flamegraph.png`` also saves it there (how the README's picture
was made); by default it goes to the test's temporary directory only.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from tests.support.browser import Browser, require_chromium
from tests.support.flamegraph_page import CHART_WIDTH, frame, settled
from tests.support.ground_truth_run import TRUTH, ground_truth_run
from tests.support.sampling import share_tolerance_pp

pytestmark = [pytest.mark.bpf, pytest.mark.slow]


def test_workload_flame_graph_in_chromium(tmp_path: Path) -> None:
    require_chromium()
    run = ground_truth_run()
    assert run.rc == 0, run.logs
    pages = sorted(run.out.glob("cpu-*.html"))
    assert len(pages) == 1, list(run.out.iterdir())
    assert pages[0].with_suffix(".svg").is_file()
    shot = tmp_path / "flamegraph.png"

    async def go() -> None:
        async with Browser(1200, 280) as b:  # the graph's height: the picture in the READMEs
            page = await b.open(pages[0].as_uri())
            await page.wait_for("document.body.dataset.ready === '1'")
            text = await page.evaluate("document.getElementById('chart').textContent")
            for fn in (*TRUTH, "main", "cpu_shares"):
                assert fn in text, fn
            width = await page.evaluate(CHART_WIDTH)
            process = await settled(page, "cpu_shares", width)  # the only process
            boxes = {fn: await frame(page, fn) for fn in TRUTH}
            n = await page.evaluate("JSON.parse(document.getElementById('fg-data').text).meta")
            for fn, truth in TRUTH.items():
                box = boxes[fn]
                assert box is not None
                share = 100.0 * box["w"] / process["w"]
                assert abs(share - truth) <= share_tolerance_pp(truth, n["samples"]), (fn, share)
            a = boxes["burn_a"]
            assert a is not None
            await page.click(a["x"] + a["w"] / 2, a["y"] + a["h"] / 2)
            await settled(page, "burn_a", width)
            await page.evaluate("document.getElementById('reset').click()")
            back = await settled(page, "burn_a", a["w"])
            await page.call(
                "Input.dispatchMouseEvent",
                type="mouseMoved",
                x=back["x"] + back["w"] / 2,
                y=back["y"] + back["h"] / 2,
            )
            await page.wait_for("document.getElementById('details').textContent")
            await page.screenshot(shot)

    asyncio.run(go())
    assert shot.stat().st_size > 10_000
    target = os.environ.get("FLAMEGRAPH_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)
