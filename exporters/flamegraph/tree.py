"""A window's ProfileSet -> the call tree a flame graph draws, as flat preorder arrays.

The root is "all", then one child per process (its executable name, or the thread's name
when the process was gone before its name was read, as in the folded output), then the
frames caller first with inlined functions expanded. Children are merged by name, so two
addresses that render the same function are one frame, and ordered by name. Values are
inclusive (a frame's value counts its callees), in the profile type's unit.

Built from the sorted list of distinct name paths in one sweep: no object per frame, so a
window of 100k distinct stacks costs lists of ints, not millions of nodes and dicts.

``prune`` keeps the ``max_nodes`` heaviest frames: a child never outweighs its parent, so the
frames above a value threshold are a connected tree, in preorder still; what a cut frame held
stays in its parent's value (drawn as the parent's own time). ``diff`` sets each frame's
delta against the previous window of the same type, scaled to this window's total.
"""

from __future__ import annotations

import gc
from array import array
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import compress

from collector.model import FRAME_KERNEL, ProfileSet
from collector.model.profile import ATTR_THREAD_NAME

ROOT = "all"
UNKNOWN_PROCESS = "[unknown]"


@dataclass(slots=True)
class Tree:
    """Frame i: ``names[i]``, ``values[i]``, ``depth[i]`` (root 0), ``kernel[i]``, and
    ``parent[i]`` (-1 for the root); frames are in preorder. ``delta[i]`` once ``diff`` ran
    (empty before)."""

    names: list[str]
    values: array[int]
    depth: array[int]
    parent: array[int]
    kernel: bytearray
    delta: array[int] = field(default_factory=lambda: array("q"))  # set by diff
    pruned: int = 0  # frames cut by ``prune``
    diffed: bool = False  # deltas are set (a previous window existed)

    @property
    def nodes(self) -> int:
        return len(self.values)

    @property
    def total(self) -> int:
        return self.values[0]


@contextmanager
def _no_gc() -> Iterator[None]:
    # Building allocates many tuples that live until the end: the cyclic collector would
    # walk them again and again for nothing (5x the build time on 100k stacks).
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _root_name(ps: ProfileSet, attrs: tuple[int, ...]) -> str:
    """A process without an executable name: the thread's name, as the folded output has it."""
    for i in attrs:
        key, value = ps.dictionary.attributes[i]
        if key == ATTR_THREAD_NAME and value:
            return str(value)
    return UNKNOWN_PROCESS


def _paths(ps: ProfileSet) -> tuple[dict[tuple[str, ...], int], set[str]]:
    """Summed value per name path (process first, then caller to leaf); kernel names."""
    d = ps.dictionary
    kernel: set[str] = set()
    loc_names: dict[int, tuple[str, ...]] = {}
    stack_names: dict[int, tuple[str, ...]] = {}
    totals: dict[tuple[str, ...], int] = {}
    column = ps.profile_type.default_index  # a heap window shows its inuse_space
    for pp in ps.processes:
        exe = pp.process.executable_name
        for rec in pp.samples:
            value = sum(rec.column(column))
            if not value:
                continue
            root = exe or _root_name(ps, rec.attribute_indices)
            names = stack_names.get(rec.stack_index)
            if names is None:
                parts: list[str] = []
                for li in reversed(d.stacks[rec.stack_index]):  # stacks are leaf first
                    ln = loc_names.get(li)
                    if ln is None:
                        loc = d.locations[li]
                        ln = loc_names[li] = tuple(loc.names())
                        if loc.frame_type == FRAME_KERNEL:
                            kernel.update(ln)
                    parts.extend(ln)
                names = stack_names[rec.stack_index] = tuple(parts)
            path = (root, *names)
            totals[path] = totals.get(path, 0) + value
    return totals, kernel


def _common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Length of the common prefix, by bisection on slice equality (compared in C)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _zeros(n: int) -> array[int]:
    return array("q", bytes(8 * n))


def build(ps: ProfileSet) -> Tree:
    with _no_gc():
        totals, kernel_names = _paths(ps)
        # Arrays, not lists: 8 bytes a frame instead of a pointer and an int object.
        names = [ROOT]
        values, depth, parent = array("q", [0]), array("i", [0]), array("i", [-1])
        open_: list[int] = [0]  # frame index at each depth of the current path
        prev: tuple[str, ...] = ()
        for path in sorted(totals):
            # Sorted and distinct, so a path never is a prefix of the one before it: it has
            # new frames, appended at once; the first hangs under the deepest shared frame,
            # each further one under the one before it.
            common = _common_prefix(prev, path)
            new = len(path) - common
            start = len(values)
            del open_[common + 1 :]
            parent.append(open_[-1])
            parent.extend(range(start, start + new - 1))
            open_.extend(range(start, start + new))
            names.extend(path[common:])
            depth.extend(range(common + 1, len(path) + 1))
            values.extend(_zeros(new))
            values[-1] = totals[path]  # own value; made inclusive below
            prev = path
        for i in range(len(values) - 1, 0, -1):  # children come after their parent
            values[parent[i]] += values[i]
        kernel = bytearray(n in kernel_names for n in names)
    return Tree(names, values, depth, parent, kernel)


def prune(tree: Tree, max_nodes: int) -> None:
    """Keep the ``max_nodes`` heaviest frames (the root always stays)."""
    n = tree.nodes
    if n <= max_nodes:
        return
    # The max_nodes-th largest value, from a count of each distinct value (far fewer than
    # frames: a sort or a heap would hold an int object per frame).
    kept = 0
    threshold = 0
    for value, count in sorted(Counter(tree.values).items(), reverse=True):
        kept += count
        if kept >= max_nodes:
            threshold = value
            break
    keep = list(compress(range(n), map(threshold.__lt__, tree.values)))  # in C
    if not keep or keep[0] != 0:
        keep.insert(0, 0)
    new_index = {old: new for new, old in enumerate(keep)}
    tree.parent = array("i", (new_index[tree.parent[i]] if i else -1 for i in keep))
    tree.names = [tree.names[i] for i in keep]
    tree.values = array("q", (tree.values[i] for i in keep))
    tree.depth = array("i", (tree.depth[i] for i in keep))
    tree.kernel = bytearray(tree.kernel[i] for i in keep)
    tree.pruned += n - len(keep)


def diff(tree: Tree, previous: Tree | None) -> None:
    """Set every frame's delta: its value minus the previous window's value of the same path,
    scaled to this window's total (a frame new in this window has delta == value)."""
    if previous is None or not previous.nodes or not previous.total:
        return
    # (parent frame, name) -> frame in the previous window; built by zip, in C.
    pairs = zip(previous.parent, previous.names, strict=True)
    prev_child = dict(zip(pairs, range(previous.nodes), strict=True))
    scale = tree.total / previous.total
    prev_scaled = [round(v * scale) for v in previous.values]
    get = prev_child.get
    # frame -> the previous window's frame of the same path, or -2 (none: parent -1 is unused)
    match = [0] * tree.nodes
    delta = [tree.values[0] - prev_scaled[0]]
    for i, p, name, v in zip(
        range(1, tree.nodes), tree.parent[1:], tree.names[1:], tree.values[1:], strict=True
    ):
        j = get((match[p], name), -2)
        match[i] = j
        delta.append(v - prev_scaled[j] if j >= 0 else v)
    tree.delta = array("q", delta)
    tree.diffed = True


def flatten(tree: Tree) -> tuple[list[str], list[int]]:
    """Names, and per frame in preorder ``name index, value, delta, kernel, depth``: flat
    lists of ints serialize faster and smaller than nested objects; the page rebuilds the
    nesting from the depths."""
    index: dict[str, int] = {}
    out: list[int] = []
    delta = tree.delta
    for i in range(tree.nodes):
        name = tree.names[i]
        k = index.get(name)
        if k is None:
            k = index[name] = len(index)
        out += (k, tree.values[i], delta[i] if delta else 0, tree.kernel[i], tree.depth[i])
    return list(index), out


def children(tree: Tree, i: int) -> list[int]:
    """Frame ``i``'s children, in order (a scan of its subtree; for tests and small trees)."""
    d = tree.depth[i]
    out = []
    for j in range(i + 1, tree.nodes):
        if tree.depth[j] <= d:
            break
        if tree.depth[j] == d + 1:
            out.append(j)
    return out
