"""Time windows of samples, one ProfileBuilder per profile type.

The pipeline keeps one ProfileWindows per distinct window setting of its exporters: cpu and
off_cpu never mix, and closing a window yields the one ProfileSet model that every exporter
of that setting receives. A window that reaches ``max_samples`` is closed at once and a new
one begins (nothing is dropped; the next file or request simply starts early).
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass

from collector.model.builder import ProfileBuilder
from collector.model.profile import ProfileSet
from collector.model.raw import ProfileType
from collector.model.symbolized import SymbolizedBatch


@dataclass(frozen=True, slots=True)
class WindowSettings:
    """How an exporter wants its windows cut: every ``interval`` seconds, or earlier once a
    profile type's window holds ``max_samples`` samples."""

    interval: float = 10.0
    max_samples: int = 1_000_000

    def __post_init__(self) -> None:
        if not self.interval > 0 or self.max_samples < 1:
            raise ValueError(f"window needs interval > 0 and max_samples >= 1, got {self}")


class ProfileWindows:
    """Thread-safe: ``add`` and ``close`` run in worker threads, possibly at the same time."""

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self._builders: dict[ProfileType, ProfileBuilder] = {}
        self._starts: dict[ProfileType, int] = {}
        self._lock = threading.Lock()

    def add(self, batch: SymbolizedBatch) -> list[ProfileSet]:
        """Add a batch to its type's window; returns the windows it filled (closed early)."""
        pt = batch.profile_type
        samples = batch.samples
        full: list[ProfileSet] = []
        with self._lock:
            builder = self._builder(pt)
            done = 0
            while done < len(samples):
                room = self.max_samples - len(builder)
                if done == 0 and room >= len(samples):
                    builder.add_all(samples)
                    done = len(samples)
                else:
                    builder.add_all(itertools.islice(samples, done, done + room))
                    done += room
                if len(builder) >= self.max_samples:
                    full.append(self._close(pt, builder))
        return full

    def _builder(self, pt: ProfileType) -> ProfileBuilder:
        builder = self._builders.get(pt)
        if builder is None:
            builder = self._builders[pt] = ProfileBuilder(pt, self.max_samples)
            self._starts[pt] = time.time_ns()
        return builder

    def _close(self, pt: ProfileType, builder: ProfileBuilder) -> ProfileSet:
        now = time.time_ns()
        start, self._starts[pt] = self._starts[pt], now
        return builder.build(start, now)

    def close(self, pt: ProfileType) -> ProfileSet | None:
        """End ``pt``'s window now and start the next; None when it held no sample."""
        with self._lock:
            builder = self._builders.get(pt)
            if builder is None:
                return None
            if not len(builder):
                self._starts[pt] = time.time_ns()
                return None
            return self._close(pt, builder)

    def close_all(self) -> list[ProfileSet]:
        return [ps for pt in list(self._builders) if (ps := self.close(pt)) is not None]

    def __len__(self) -> int:
        """Samples held in open windows (all types)."""
        with self._lock:
            return sum(len(b) for b in self._builders.values())
