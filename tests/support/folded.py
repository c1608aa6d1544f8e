"""Reading what the folded exporter wrote: one stack per line, its count after the last space."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def read_folded(out: Path) -> Counter[str]:
    """Samples per folded stack over every ``*.folded`` file in ``out``."""
    lines: Counter[str] = Counter()
    for f in out.glob("*.folded"):
        for line in f.read_text().splitlines():
            stack, count = line.rsplit(" ", 1)
            lines[stack] += int(count)
    return lines
