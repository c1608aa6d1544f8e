"""A self-contained interactive flame graph page: d3 and d3-flame-graph (vendored in assets/,
see README) and the data are inlined, so the file opens from file:// with no network. A
Content-Security-Policy forbids every fetch, which keeps that promise checkable.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from functools import cache
from importlib import resources

from collector.model import ProfileSet
from exporters.flamegraph.tree import Tree, flatten

ASSETS = ("d3.v7.9.2.min.js", "d3-flamegraph.v5.0.0.umd.min.js")


@cache
def _scripts() -> str:
    root = resources.files("exporters.flamegraph") / "assets"
    parts = []
    for name in ASSETS:
        js = (root / name).read_text(encoding="utf-8").replace("</script", "<\\/script")
        parts.append(f"<script>/* {name} */\n{js}\n</script>")
    return "\n".join(parts)


def _json(value: object) -> str:
    # Inside <script>: no "<" may open a tag; ASCII-only also survives names that are not
    # valid UTF-8 (surrogate escapes from raw symbol tables).
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _unit(sample_type: str, unit: str) -> str:
    """What the values count: the unit, or for counts the thing counted (samples, objects)."""
    return unit if unit != "count" else sample_type


def title(ps: ProfileSet) -> str:
    return f"{ps.profile_type.name} {_when(ps.start_ns)} - {_when(ps.end_ns)[11:]}"


def meta(ps: ProfileSet, tree: Tree, source: str, previous: str) -> dict:
    pt = ps.profile_type
    return {
        "title": title(ps),
        "source": source,
        "type": pt.name,
        "unit": _unit(*pt.default_value_type),
        "samples": ps.sample_count,
        "total": tree.total,
        "processes": len(ps.processes),
        "frames": tree.nodes,
        "pruned": tree.pruned,
        "diff": tree.diffed,
        "previous": previous if tree.diffed else "",
    }


def render(ps: ProfileSet, tree: Tree, source: str, previous: str = "") -> bytes:
    """The page; ``previous`` names the window the deltas compare against."""
    names, nodes = flatten(tree)
    m = meta(ps, tree, source, previous)
    data = _json({"meta": m, "names": names, "nodes": nodes})
    page = (
        _TEMPLATE.replace("@TITLE@", html.escape(f"{m['title']} - {source}"))
        .replace("@SCRIPTS@", _scripts())
        .replace("@DATA@", data)
    )
    return page.encode("utf-8")


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>
 body { font: 14px Verdana, sans-serif; margin: 12px 16px; color: #222; }
 header { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: center; }
 h1 { font-size: 17px; margin: 0 12px 0 0; }
 #facts { color: #555; font-size: 12px; }
 input[type=search] { width: 16em; }
 #details { min-height: 1.4em; margin: 8px 0; font-size: 12px; color: #333;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
 #legend { font-size: 12px; color: #555; display: none; }
 #legend span { padding: 0 6px; }
 #chart { width: 100%; }
</style>
</head><body>
<header>
 <h1 id="title"></h1>
 <label>Search <input id="search" type="search" placeholder="function (regex)"></label>
 <button id="reset" type="button">Reset zoom</button>
 <button id="clear" type="button">Clear search</button>
 <label id="difflabel"><input id="diff" type="checkbox"> Differential</label>
 <span id="legend"><span style="background:rgb(235,110,110)">grew</span><span
  style="background:rgb(110,110,235)">shrank</span><span
  style="background:rgb(255,190,90)">new</span> vs <span id="prev"></span></span>
</header>
<div id="facts"></div>
<div id="details"></div>
<div id="chart"></div>
@SCRIPTS@
<script type="application/json" id="fg-data">@DATA@</script>
<script>
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("fg-data").textContent);
  const M = D.meta, NAMES = D.names, A = D.nodes;
  // Rebuild the nesting from the preorder list (name, value, delta, kernel, depth).
  const root = {n: A[0], v: A[1], d: A[2]};
  const path = [root];
  for (let i = 5; i < A.length; i += 5) {
    const o = {n: A[i], v: A[i + 1], d: A[i + 2]};
    if (A[i + 3]) o.l = "kernel";
    const depth = A[i + 4];
    const parent = path[depth - 1];
    (parent.c || (parent.c = [])).push(o);
    path[depth] = o;
  }
  const pct = (v) => (100 * v / (M.total || 1)).toFixed(2);
  const fmt = (v) => v.toLocaleString("en-US");
  const name = (d) => NAMES[d.data.n];
  document.getElementById("title").textContent = M.title;
  // Values in the type's unit: samples for cpu, nanoseconds (shown as seconds) off-CPU.
  const val = (v) => M.unit === "nanoseconds" ? `${(v / 1e9).toFixed(3)} s` :
    M.unit === "samples" ? `${fmt(v)} samples` : `${fmt(v)} ${M.unit}`;
  document.getElementById("facts").textContent =
    `${M.source}: ${fmt(M.samples)} samples` +
    (M.unit === "samples" ? "" : `, ${val(M.total)}`) +
    `, ${M.processes} process${M.processes === 1 ? "" : "es"}, ${fmt(M.frames)} frames` +
    (M.pruned ? ` (${fmt(M.pruned)} smallest frames left out)` : "");
  const el = document.getElementById("chart");
  let diffOn = false;
  const chart = flamegraph.default()
    .width(Math.max(el.clientWidth, 400))
    .cellHeight(18)
    .transitionDuration(300)
    .minFrameSize(1)
    .sort(true)
    .getName(name)
    .setDetailsElement(document.getElementById("details"))
    .setLabelHandler((d) => {
      let s = `${name(d)} (${pct(d.value)}%, ${val(d.value)})`;
      if (diffOn && M.diff) s += `, ${d.data.d >= 0 ? "+" : ""}${pct(d.data.d)}% vs previous`;
      return s;
    });
  const diffBox = document.getElementById("diff");
  if (!M.diff) {
    diffBox.disabled = true;
    document.getElementById("difflabel").title = "no previous window of this type yet";
  }
  document.getElementById("prev").textContent = M.previous;
  diffBox.addEventListener("change", () => {
    diffOn = diffBox.checked;
    if (diffOn) chart.setColorMapper(flamegraph.colorMapper.differentialColorMapper);
    else chart.setColorMapper();
    document.getElementById("legend").style.display = diffOn ? "inline" : "none";
    chart.update();
  });
  const search = document.getElementById("search");
  search.addEventListener("input", () => {
    const t = search.value;
    if (!t) { chart.clear(); return; }
    let term = t;
    try { new RegExp(t); } catch (e) { term = t.replace(/[.*+?^${}()|[\\]\\\\]/g, "\\\\$&"); }
    chart.search(term);
  });
  document.getElementById("reset").addEventListener("click", () => chart.resetZoom());
  document.getElementById("clear").addEventListener("click", () => {
    search.value = ""; chart.clear();
  });
  d3.select(el).datum(root).call(chart);
  window.flameChart = chart;
  document.body.dataset.ready = "1";
})();
</script>
</body></html>
"""
