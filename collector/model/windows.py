"""Time windows of samples, one ProfileBuilder per profile type.

Every exporter that batches (files on an interval, network requests) keeps samples this
way: cpu and off_cpu never mix, and closing a window yields the one ProfileSet model.
"""

from __future__ import annotations

import time

from collector.model.builder import ProfileBuilder
from collector.model.profile import ProfileSet
from collector.model.raw import ProfileType
from collector.model.symbolized import SymbolizedBatch


class ProfileWindows:
    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self._builders: dict[ProfileType, ProfileBuilder] = {}
        self._starts: dict[ProfileType, int] = {}

    def add(self, batch: SymbolizedBatch) -> ProfileBuilder:
        """Add a batch to its type's window; returns that window's builder."""
        pt = batch.profile_type
        builder = self._builders.get(pt)
        if builder is None:
            builder = self._builders[pt] = ProfileBuilder(pt, self.max_samples)
            self._starts[pt] = time.time_ns()
        builder.add_all(batch.samples)
        return builder

    def close(self, pt: ProfileType) -> ProfileSet | None:
        """End ``pt``'s window now and start the next; None when it held no sample."""
        builder = self._builders.get(pt)
        if builder is None:
            return None
        now = time.time_ns()
        start, self._starts[pt] = self._starts[pt], now
        return builder.build(start, now) if len(builder) else None

    def close_all(self) -> list[ProfileSet]:
        return [ps for pt in list(self._builders) if (ps := self.close(pt)) is not None]
