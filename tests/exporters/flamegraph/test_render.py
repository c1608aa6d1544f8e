"""The flame graph tree, its pruning and diff, and what the HTML and SVG carry.

The tree is checked against the folded encoder's totals (an independent rendering of the same
window); the page's inlined data is parsed back out of the HTML and rebuilt as the page's
script rebuilds it; the SVG is parsed as XML.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from collector.encoding import folded_totals
from collector.model import (
    Function,
    Line,
    Location,
    Mapping,
    ProcessInfo,
    ProfileBuilder,
    ProfileSet,
    Sample,
    Stack,
)
from exporters.flamegraph import html, svg
from exporters.flamegraph.tree import Tree, build, children, diff, flatten, prune
from tests.support import encoding_samples as es
from tests.support.flamegraph_page import leaf_paths, page_data, rebuild


def find(tree: Tree, *path: str) -> int:
    """The frame at ``path`` below the root."""
    i = 0
    for name in path:
        i = next(c for c in children(tree, i) if tree.names[c] == name)
    return i


def test_tree_matches_the_folded_totals() -> None:
    ps = es.profile_set(scale=3)
    tree = build(ps)
    assert leaf_paths(tree) == folded_totals(ps)
    assert tree.names[0] == "all" and tree.total == 45
    write = find(tree, "app", "main", "work", "write")
    assert not tree.kernel[write]
    assert tree.kernel[find(tree, "app", "main", "work", "write", "entry_SYSCALL_64")]
    # preorder, children by name: every frame's parent comes before it, one level up
    for i in range(1, tree.nodes):
        assert tree.parent[i] < i and tree.depth[tree.parent[i]] == tree.depth[i] - 1
    kids = [tree.names[c] for c in children(tree, find(tree, "app", "main"))]
    assert kids == sorted(kids) == ["libc.so.6+0x29234", "work"]
    assert tree.nodes == len(flatten(tree)[1]) // 5 == 13


def test_prune_keeps_a_connected_tree_of_the_heaviest_frames() -> None:
    ps = es.profile_set()
    tree = build(ps)
    total = tree.nodes
    prune(tree, 5)
    assert tree.nodes <= 5 and tree.pruned == total - tree.nodes
    assert len(flatten(tree)[1]) // 5 == tree.nodes
    assert tree.total == 15  # a cut frame's time stays in its caller
    for i in range(1, tree.nodes):
        p = tree.parent[i]
        assert p < i and tree.depth[p] == tree.depth[i] - 1
        assert sum(tree.values[c] for c in children(tree, p)) <= tree.values[p]
    assert [tree.names[i] for i in range(tree.nodes)][:3] == ["all", "app", "main"]


def test_diff_against_the_previous_window_scales_to_the_total() -> None:
    prev = build(es.profile_set(scale=1))
    same = build(es.profile_set(scale=4))
    diff(same, prev)
    assert same.diffed and set(same.delta) == {0}  # same shares: nothing changed
    # A window where only "app" ran: app grew, the sleeper is not in it.
    b = ProfileBuilder(es.CPU)
    b.add_all(s for s in es.samples() if s.process is es.APP_PROC)
    cur = build(b.build())
    diff(cur, prev)
    app = find(cur, "app")
    assert cur.delta[app] == 14 - round(14 * 14 / 15) and cur.delta[app] > 0
    # a frame the previous window did not have: delta == value
    b = ProfileBuilder(es.CPU)
    b.add(Sample(Stack((es.L_MAIN,)), ProcessInfo(9, "new"), 9, 0, "new", es.T0, 2))
    fresh = build(b.build())
    diff(fresh, prev)
    assert fresh.delta[find(fresh, "new")] == 2
    first = build(es.profile_set())
    diff(first, None)
    assert not first.diffed


def test_page_holds_the_tree_and_the_vendored_scripts() -> None:
    ps = es.profile_set(scale=2)
    tree = build(ps)
    page = html.render(ps, tree, "flamegraph/x")
    data = page_data(page)
    assert leaf_paths(rebuild(data["names"], data["nodes"])) == folded_totals(ps)
    assert data["meta"]["samples"] == 30 and data["meta"]["diff"] is False
    assert b"https://d3js.org v7.9.2" in page  # d3 inlined
    assert b"flamegraph" in page and b"differentialColorMapper" in page
    assert b"<script src" not in page and b"<link" not in page  # nothing fetched
    assert b"Content-Security-Policy" in page


def hostile_set() -> ProfileSet:
    m = Mapping(0x400000, 0x500000, 0, "/bin/x")
    names = ["</script><script>alert(1)</script>", "a&b<c>\"d'", "bell\x07\x00nul", "é\udcff"]
    locs = tuple(Location(m, 0x400000 + i, (Line(Function(n)),)) for i, n in enumerate(names))
    b = ProfileBuilder(es.CPU)
    b.add(Sample(Stack(locs), ProcessInfo(1, "x<y>", "/bin/x"), 1, 0, "x", es.T0, 3))
    return b.build()


def test_hostile_names_cannot_break_out_of_the_page_or_the_svg() -> None:
    ps = hostile_set()
    tree = build(ps)
    page = html.render(ps, tree, "flamegraph")
    data_text = page.partition(b'id="fg-data">')[2].split(b"</script>", 1)[0]
    assert b"<" not in data_text and b"alert(1)" in data_text
    assert "</script><script>alert(1)</script>" in page_data(page)["names"]
    image = svg.render(ps, tree, "flamegraph")
    doc = ET.fromstring(image)  # well-formed XML despite control characters
    titles = [t.text or "" for t in doc.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("</script><script>alert(1)</script>") for t in titles)
    assert any("bell\ufffd\ufffdnul" in t for t in titles)


def test_svg_frames_span_their_share() -> None:
    ps = es.profile_set()
    image = svg.render(ps, build(ps), "flamegraph")
    doc = ET.fromstring(image)
    ns = "{http://www.w3.org/2000/svg}"
    frames = {}
    for g in doc.iter(f"{ns}g"):
        title = g.find(f"{ns}title")
        rect = g.find(f"{ns}rect")
        assert title is not None and rect is not None
        frames[(title.text or "").split(" (")[0]] = float(rect.get("width", "0"))
    full = frames["all"]
    assert abs(full - (svg.WIDTH - 2 * svg.SIDE)) < 0.5
    assert abs(frames["square"] / full - 8 / 15) < 0.01
    assert abs(frames["ksys_write"] / full - 4 / 15) < 0.01


def test_a_tree_of_one_frame_renders() -> None:
    b = ProfileBuilder(es.CPU)
    b.add(Sample(Stack(()), ProcessInfo(3, "idle"), 3, 0, "idle", es.T0, 1))
    ps = b.build()
    tree = build(ps)
    assert tree.nodes == 2
    ET.fromstring(svg.render(ps, tree, "f"))
    assert leaf_paths(rebuild(*flatten(tree))) == {"idle": 1}
