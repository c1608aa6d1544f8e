"""How far a sampled share may honestly stray from its ground truth.

With n samples, a function that truly takes p of the CPU gets a share whose binomial
standard error is sqrt(p (1 - p) / n). A fixed tolerance is either loose when n is large or
flaky when a busy machine leaves the workload fewer samples; this scales with n instead.
"""

from __future__ import annotations

import math

SIGMAS = 4.0  # a false failure about once in 16 000 checks


def share_tolerance_pp(truth_pct: float, n: int, floor_pp: float = 5.0) -> float:
    """Allowed |measured - truth| in percentage points for a share measured from n samples."""
    if n <= 0:
        return math.inf
    p = truth_pct / 100.0
    return max(floor_pp, SIGMAS * 100.0 * math.sqrt(p * (1.0 - p) / n))


def expected_samples(cpu_seconds: float, frequency_hz: float) -> float:
    """Samples a per-CPU timer at frequency_hz takes of a task that ran cpu_seconds."""
    return cpu_seconds * frequency_hz
