"""Counters that components bump and the runtime reports, one log line per interval.

Drops, lost stacks and full maps are counted here so they are reported, never silent.
"""

from __future__ import annotations

import threading
from collections import defaultdict


class Counters:
    """Thread-safe named counters, grouped by component id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[str, int]] = defaultdict(dict)
        self._reported: dict[tuple[str, str], int] = {}

    def add(self, component: str, name: str, n: int = 1) -> None:
        if not n:
            return
        with self._lock:
            group = self._values[component]
            group[name] = group.get(name, 0) + n

    def get(self, component: str, name: str) -> int:
        with self._lock:
            return self._values.get(component, {}).get(name, 0)

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {k: dict(v) for k, v in self._values.items()}

    def deltas(self) -> dict[str, dict[str, int]]:
        """What changed since the previous call (for the periodic report)."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for comp, group in self._values.items():
                for name, value in group.items():
                    prev = self._reported.get((comp, name), 0)
                    if value != prev:
                        out.setdefault(comp, {})[name] = value - prev
                        self._reported[(comp, name)] = value
        return out
