"""A CPU budget for unwind-table work: a token bucket of CPU seconds.

The worker that builds tables charges the thread CPU time each load took; once the bucket is
empty it waits until ``rate`` seconds of CPU per wall second have refilled it. A start on a
host with 50-75 binaries thus costs at most ``burst`` seconds of CPU at once, then ``rate`` of
a core, instead of a whole core for ~5 s (collector/unwind/README.md, "Cost in the receivers").
"""

from __future__ import annotations

import time
from collections.abc import Callable


class CpuBudget:
    """``rate``: CPU seconds per wall second (0.1 = a tenth of one core); ``burst``: what may
    be spent at once after a quiet spell. ``clock`` is monotonic wall time (tests pass one)."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last = clock()
        self.spent = 0.0  # CPU seconds charged in all
        self.waited = 0.0  # wall seconds the work was told to wait, in all

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def wait_s(self) -> float:
        """0 when work may run now, else how long to wait before asking again."""
        self._refill()
        if self._tokens > 0:
            return 0.0
        return -self._tokens / self.rate + 1e-3

    def charge(self, cpu_s: float) -> None:
        """Work that took ``cpu_s`` seconds of CPU ran (it may overdraw: the next waits)."""
        self._refill()
        self._tokens -= max(0.0, cpu_s)
        self.spent += max(0.0, cpu_s)

    def note_wait(self, seconds: float) -> None:
        self.waited += seconds
