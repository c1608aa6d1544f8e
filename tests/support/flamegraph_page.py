"""Reading a flamegraph exporter's page back: its inlined data, rebuilt as the page's script
rebuilds it, and the folded lines that tree stands for; and, in a browser (tests/support/
browser.py), where a frame is drawn."""

from __future__ import annotations

import json
import re
from array import array

from exporters.flamegraph.tree import Tree
from tests.support.browser import Page


def leaf_paths(tree: Tree) -> dict[str, int]:
    """Folded lines from the tree: each frame's own value (value minus its children's)."""
    own = list(tree.values)
    path: list[str] = []
    out: dict[str, int] = {}
    for i in range(1, tree.nodes):
        own[tree.parent[i]] -= tree.values[i]
    for i in range(tree.nodes):
        del path[tree.depth[i] :]
        path.append(tree.names[i])
        if i and own[i]:
            out[";".join(path[1:])] = own[i]
    return out


def rebuild(names: list[str], a: list[int]) -> Tree:
    """What the page's script does with the flat preorder list, as a Tree again."""
    t = Tree([], array("q"), array("i"), array("i"), bytearray(), array("q"))
    last: dict[int, int] = {}
    for k in range(0, len(a), 5):
        i = k // 5
        depth = a[k + 4]
        t.names.append(names[a[k]])
        t.values.append(a[k + 1])
        t.delta.append(a[k + 2])
        t.kernel.append(a[k + 3])
        t.depth.append(depth)
        t.parent.append(last[depth - 1] if depth else -1)
        last[depth] = i
    return t


def page_data(page: bytes) -> dict:
    m = re.search(rb'<script type="application/json" id="fg-data">(.*?)</script>', page, re.S)
    assert m is not None
    return json.loads(m.group(1))


# The widest frame of that name (a function can appear under several callers).
FRAME_BOX = """(() => {
  const w = (g) => g.querySelector('rect').getBoundingClientRect().width;
  const g = [...document.querySelectorAll('#chart g.frame')]
    .filter(g => g.getAttribute('name') === %s)
    .reduce((best, g) => (best && w(best) >= w(g) ? best : g), null);
  if (!g) return null;
  const r = g.querySelector('rect').getBoundingClientRect();
  const fill = g.querySelector('rect').getAttribute('fill');
  return {x: r.x, y: r.y, w: r.width, h: r.height, fill: fill};
})()"""
CHART_WIDTH = "document.querySelector('#chart svg').getBoundingClientRect().width"


async def frame(page: Page, name: str) -> dict | None:
    return await page.evaluate(FRAME_BOX % json.dumps(name))


async def until(page: Page, name: str, condition: str) -> dict:
    """Wait until ``condition`` (JavaScript over ``b``, the frame's box) holds for ``name``."""
    box = FRAME_BOX % json.dumps(name)
    return await page.wait_for(
        f"(() => {{ const b = {box}; return b && ({condition}) ? b : null; }})()"
    )


async def settled(page: Page, name: str, width: float) -> dict:
    """Wait until ``name``'s frame is ``width`` wide (the zoom transition has ended)."""
    return await until(page, name, f"Math.abs(b.w - {width}) < 1")
