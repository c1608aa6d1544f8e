"""A window's ProfileSet -> the call tree a flame graph draws.

The root is "all", then one child per process (its executable name, or the thread's name
when the process was gone before its name was read, as in the folded output), then the
frames caller first with inlined functions expanded. Children are merged by name, so two
addresses that render the same function are one frame. Values are inclusive (a frame's
value counts its callees), in the profile type's unit.

``prune`` keeps at most ``max_nodes`` frames: since a child never outweighs its parent,
keeping the frames above a value threshold keeps a connected tree; what a cut frame held
stays in its parent's value (shown as the parent's own time). ``diff`` sets each frame's
delta against the previous window of the same type, scaled to this window's total, so
only shares that changed are coloured.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.model import FRAME_KERNEL, ProfileSet
from collector.model.profile import ATTR_THREAD_NAME

ROOT = "all"
UNKNOWN_PROCESS = "[unknown]"


class Node:
    __slots__ = ("children", "delta", "kernel", "name", "value")

    def __init__(self, name: str, kernel: bool = False) -> None:
        self.name = name
        self.kernel = kernel
        self.value = 0
        self.delta = 0
        self.children: dict[str, Node] = {}

    def child(self, name: str, kernel: bool) -> Node:
        c = self.children.get(name)
        if c is None:
            c = self.children[name] = Node(name, kernel)
        return c


@dataclass(slots=True)
class Tree:
    root: Node
    nodes: int  # frames in the tree, root included
    pruned: int = 0  # frames cut by ``prune``
    diffed: bool = False  # deltas are set (a previous window existed)


def _root_name(ps: ProfileSet, exe: str, attrs: tuple[int, ...]) -> str:
    if exe:
        return exe
    for i in attrs:
        key, value = ps.dictionary.attributes[i]
        if key == ATTR_THREAD_NAME and value:
            return str(value)
    return UNKNOWN_PROCESS


def build(ps: ProfileSet) -> Tree:
    d = ps.dictionary
    root = Node(ROOT)
    count = 1
    # Per location, its frames caller first: (name, kernel) for each inlined function.
    loc_frames: dict[int, list[tuple[str, bool]]] = {}
    path_of: dict[int, list[tuple[str, bool]]] = {}
    for pp in ps.processes:
        exe = pp.process.executable_name
        for rec in pp.samples:
            value = sum(rec.values)
            if not value:
                continue
            path = path_of.get(rec.stack_index)
            if path is None:
                path = []
                for li in reversed(d.stacks[rec.stack_index]):  # stacks are leaf first
                    frames = loc_frames.get(li)
                    if frames is None:
                        loc = d.locations[li]
                        kernel = loc.frame_type == FRAME_KERNEL
                        frames = loc_frames[li] = [(n, kernel) for n in loc.names()]
                    path.extend(frames)
                path_of[rec.stack_index] = path
            root.value += value
            node = root.child(_root_name(ps, exe, rec.attribute_indices), False)
            node.value += value
            for name, kernel in path:
                c = node.children.get(name)
                if c is None:
                    c = node.children[name] = Node(name, kernel)
                    count += 1
                c.value += value
                node = c
    count += len(root.children)
    return Tree(root, count)


def _walk(root: Node) -> list[Node]:
    out = [root]
    i = 0
    while i < len(out):
        out.extend(out[i].children.values())
        i += 1
    return out


def prune(tree: Tree, max_nodes: int) -> None:
    """Keep the ``max_nodes`` heaviest frames (the root always stays)."""
    if tree.nodes <= max_nodes:
        return
    values = sorted((n.value for n in _walk(tree.root)), reverse=True)
    threshold = values[max(max_nodes - 1, 0)]
    kept = 0
    stack = [tree.root]
    while stack:
        n = stack.pop()
        kept += 1
        n.children = {k: c for k, c in n.children.items() if c.value > threshold}
        stack.extend(n.children.values())
    tree.pruned = tree.nodes - kept
    tree.nodes = kept


def diff(tree: Tree, previous: Tree | None) -> None:
    """Set every frame's delta: its value minus the previous window's, scaled to this
    window's total (a frame new in this window has delta == value)."""
    if previous is None or not previous.root.value:
        return
    scale = tree.root.value / previous.root.value
    stack: list[tuple[Node, Node | None]] = [(tree.root, previous.root)]
    while stack:
        n, p = stack.pop()
        n.delta = n.value - (round(p.value * scale) if p is not None else 0)
        for name, c in n.children.items():
            stack.append((c, p.children.get(name) if p is not None else None))
    tree.diffed = True


def flatten(tree: Tree) -> tuple[list[str], list[int]]:
    """Names, and per frame in preorder ``name index, value, delta, kernel, children``:
    flat lists of ints serialize several times faster and smaller than nested objects;
    the page rebuilds the nesting."""
    names: dict[str, int] = {}
    out: list[int] = []
    stack = [tree.root]
    while stack:
        n = stack.pop()
        i = names.get(n.name)
        if i is None:
            i = names[n.name] = len(names)
        kids = list(n.children.values())
        out += (i, n.value, n.delta, 1 if n.kernel else 0, len(kids))
        stack.extend(reversed(kids))
    return list(names), out
