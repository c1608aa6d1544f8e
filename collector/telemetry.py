"""Counters that components bump and the runtime reports, one log line per interval.

Drops, lost stacks and full maps are counted here so they are reported, never silent.
Gauges (a queue's current size, its capacity) are callbacks read when someone looks (the
metrics endpoint), so nothing is computed on the hot path. ``MemoryPressure`` is the
collector-wide signal the memory_limiter sets and receivers read to sample less.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable

log = logging.getLogger("collector.telemetry")

Gauge = Callable[[], float]


class Counters:
    """Thread-safe named counters (and gauge callbacks), grouped by component id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, dict[str, int]] = defaultdict(dict)
        self._reported: dict[tuple[str, str], int] = {}
        self._gauges: dict[tuple[str, str], Gauge] = {}

    def add(self, component: str, name: str, n: int = 1) -> None:
        if not n:
            return
        with self._lock:
            group = self._values[component]
            group[name] = group.get(name, 0) + n

    def declare(self, component: str) -> None:
        """Make ``component`` known with no counts yet (the metrics endpoint shows its
        otelcol metrics at 0 from the start, not only after the first event)."""
        with self._lock:
            self._values.setdefault(component, {})

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

    # -- gauges -----------------------------------------------------------------------------
    def gauge(self, component: str, name: str, read: Gauge | None) -> None:
        """Register ``read`` as the current value of ``component``'s ``name``; None removes
        it (a component being shut down, e.g. on reload, takes its gauges with it)."""
        with self._lock:
            if read is None:
                self._gauges.pop((component, name), None)
            else:
                self._gauges[(component, name)] = read

    def drop_gauge(self, component: str, name: str, read: Gauge) -> None:
        """Remove the gauge if it is still ``read``: a part retiring after its replacement
        registered (a reload) leaves the replacement's gauge in place."""
        with self._lock:
            if self._gauges.get((component, name)) is read:
                del self._gauges[(component, name)]

    def gauges(self) -> dict[str, dict[str, float]]:
        """Every gauge read now; one that raises is left out (and logged at debug)."""
        with self._lock:
            items = list(self._gauges.items())
        out: dict[str, dict[str, float]] = {}
        for (comp, name), read in items:
            try:
                out.setdefault(comp, {})[name] = float(read())
            except Exception:
                log.debug("gauge failed component=%s name=%s", comp, name, exc_info=True)
        return out


class MemoryPressure:
    """How close the process is to its memory limits: 0 none, 1 soft, 2 hard.

    Set by the memory_limiter on its check interval, read by anyone for free (a plain
    attribute read). Receivers honour it by taking in less: the otlp receiver refuses
    requests with UNAVAILABLE / 503 while it is raised (senders retry), and a sampling
    receiver may lower its rate by ``sampling_factor``.
    """

    NONE, SOFT, HARD = 0, 1, 2

    def __init__(self) -> None:
        self.level = self.NONE
        self.rss_bytes = 0
        self.changes = 0  # transitions, for tests and the metrics endpoint

    @property
    def sampling_factor(self) -> float:
        """What a sampling receiver should multiply its rate by (1 = full rate)."""
        return {self.NONE: 1.0, self.SOFT: 0.5}.get(self.level, 0.0)

    def set(self, level: int, rss_bytes: int) -> bool:
        """Record a measurement; True when the level changed."""
        self.rss_bytes = rss_bytes
        if level == self.level:
            return False
        self.level = level
        self.changes += 1
        return True
