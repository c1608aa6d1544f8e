"""A static flame graph SVG (root at the bottom, as flamegraph.pl draws it), written here:
rectangles with a <title> tooltip each and a label where it fits. Frames narrower than
``MIN_WIDTH`` (one pixel) are left out with their callees (flamegraph.pl's --minwidth), so
the file's size follows the picture, not the profile: what is narrower cannot be seen in a
static picture (the HTML page keeps it, to zoom into). No script, so any viewer shows it.
"""

from __future__ import annotations

import re
import zlib

from collector.model import ProfileSet
from exporters.flamegraph.html import title as window_title
from exporters.flamegraph.tree import Tree

WIDTH = 1200
FRAME = 16  # pixels per frame row
PAD_TOP = 40
PAD_BOTTOM = 24
SIDE = 10
MIN_WIDTH = 1.0
CHAR = 7.0  # pixels per character at 12px Verdana, for deciding how much label fits
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(s: str) -> str:
    """Escaped for XML text and attributes; characters XML cannot hold become U+FFFD."""
    s = _NOT_XML.sub("\ufffd", s)
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def color(name: str, kernel: bool) -> str:
    """flamegraph.pl's palette, seeded by the name so a function keeps its colour across
    windows: warm reds for user code, orange for the kernel."""
    h = zlib.crc32(name.encode("utf-8", "replace"))
    v1, v2, v3 = (h & 0xFF) / 255, ((h >> 8) & 0xFF) / 255, ((h >> 16) & 0xFF) / 255
    if kernel:
        return f"rgb({int(200 + 55 * v1)},{int(120 + 60 * v2)},{int(30 * v3)})"
    return f"rgb({int(205 + 50 * v3)},{int(230 * v1)},{int(55 * v2)})"


def render(ps: ProfileSet, tree: Tree, source: str) -> bytes:
    total = tree.total or 1
    scale = (WIDTH - 2 * SIDE) / total
    # Frames in preorder with children by name; each is drawn at its parent's x plus the
    # widths of the siblings before it. Narrow ones are skipped (their callees are narrower).
    widths = [v * scale for v in tree.values]
    shown = [w >= MIN_WIDTH for w in widths]
    rows = max((d for d, ok in zip(tree.depth, shown, strict=True) if ok), default=0) + 1
    height = PAD_TOP + rows * FRAME + PAD_BOTTOM
    sample_type, unit = ps.profile_type.default_value_type
    unit = _text(sample_type if unit == "count" else unit)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="Verdana, sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="#f8f8f2"/>',
        f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="17">'
        f"{_text(window_title(ps))}</text>",
        f'<text x="{SIDE}" y="{height - 8}" fill="#555">{_text(source)}: '
        f"{ps.sample_count} samples, {tree.total} {unit}"
        + (f", {tree.pruned} smallest frames left out" if tree.pruned else "")
        + "</text>",
    ]
    cursor = [float(SIDE)] * (max(tree.depth, default=0) + 2)  # next free x per depth
    styled: dict[str, tuple[str, str]] = {}  # name -> (escaped, colour), once per name
    for i in range(tree.nodes):
        depth, w = tree.depth[i], widths[i]
        x = cursor[depth]
        cursor[depth] = x + w
        cursor[depth + 1] = x  # this frame's children start at its left edge
        if not shown[i]:
            continue
        name = tree.names[i]
        kernel = bool(tree.kernel[i])
        st = styled.get(name)
        if st is None:
            st = styled[name] = (_text(name), color(name, kernel))
        label, fill = st
        y = PAD_TOP + (rows - 1 - depth) * FRAME
        value = tree.values[i]
        out.append(
            f"<g><title>{label} ({value} {unit}, {100 * value / total:.2f}%)</title>"
            f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{FRAME - 1}" fill="{fill}" rx="2"/>'
        )
        chars = int((w - 6) / CHAR)
        if chars >= 3:
            text = label if len(name) <= chars else _text(name[: chars - 2] + "..")
            out.append(f'<text x="{x + 3:.1f}" y="{y + FRAME - 4}">{text}</text></g>')
        else:
            out.append("</g>")
    out.append("</svg>\n")
    return "\n".join(out).encode("utf-8")
