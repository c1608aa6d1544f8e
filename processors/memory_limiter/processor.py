"""The memory_limiter: reads the collector's RSS on an interval and gates batches on it.

One checker per setting serves every pipeline that lists the processor (``Host.shared``),
and it publishes its verdict on ``Host.pressure`` for receivers: the otlp receiver refuses
requests while it is raised (senders retry), a sampling receiver may sample less.
``process`` only reads the last verdict, so the cost per batch is an attribute read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from collector import logs
from collector.component import CreateSettings
from collector.host import Host
from collector.pipeline.queues import batch_len
from collector.telemetry import MemoryPressure
from processors.memory_limiter.config import MemoryLimiterConfig

PAGE = os.sysconf("SC_PAGE_SIZE")
# At most this often while above the hard limit: a full collection walks the whole heap.
COLLECT_EVERY_S = 5.0


def rss_bytes() -> int:
    """Resident set size from /proc/self/statm (one small read, no parsing of status)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE


def _malloc_trim() -> None:
    # Python frees to glibc's heap; malloc_trim hands the free pages back to the kernel,
    # which is what RSS measures. Absent outside glibc: then only gc runs.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class Checker:
    """Measures RSS every ``check_interval`` and sets the pressure level."""

    def __init__(
        self, config: MemoryLimiterConfig, pressure: MemoryPressure, log: logging.Logger
    ) -> None:
        self.config = config
        self.pressure = pressure
        self.log = log
        self.say = logs.Throttle(log)
        self.soft = config.soft_bytes()
        self.hard = config.hard_bytes()
        self.checks = 0
        self.collections = 0
        self.peak = 0
        self._last_collect = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self.check()  # a verdict before the first batch
            self._task = asyncio.get_running_loop().create_task(self._run(), name="memory_limiter")

    def level_for(self, rss: int) -> int:
        if rss >= self.hard:
            return MemoryPressure.HARD
        if rss >= self.soft:
            return MemoryPressure.SOFT
        return MemoryPressure.NONE

    def check(self) -> int:
        rss = rss_bytes()
        self.checks += 1
        self.peak = max(self.peak, rss)
        level = self.level_for(rss)
        if level == MemoryPressure.HARD:
            now = time.monotonic()
            if now - self._last_collect >= COLLECT_EVERY_S:
                self._last_collect = now
                self.collections += 1
                gc.collect()
                _malloc_trim()
                rss = rss_bytes()
                level = self.level_for(rss)
        if self.pressure.set(level, rss):
            names = ("under the soft limit", "above the soft limit", "above the hard limit")
            self.say(
                logging.WARNING if level else logging.INFO,
                "memory %s rss_mib=%.1f soft_mib=%d hard_mib=%d",
                names[level],
                rss / 2**20,
                self.soft >> 20,
                self.hard >> 20,
            )
        return level

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.config.check_interval)
            try:
                self.check()
            except OSError:  # /proc unreadable: keep the last verdict, say so
                self.say(logging.ERROR, "memory_limiter: cannot read /proc/self/statm")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.pressure.set(MemoryPressure.NONE, self.pressure.rss_bytes)
        self.say.flush(final=True)


class MemoryLimiterProcessor:
    """Counters: refused_batches, refused_samples (above soft), dropped_batches_hard_limit,
    dropped_samples_hard_limit (above hard), passed_samples; gauges: rss_bytes,
    soft_limit_bytes, hard_limit_bytes, pressure_level, checks."""

    def __init__(self, settings: CreateSettings, config: MemoryLimiterConfig) -> None:
        self.id = settings.id
        self.log = settings.logger
        self.config = config
        self._key = ("memory_limiter", config)
        self._host: Host | None = None
        self.checker: Checker | None = None
        self._gauges: dict[str, Callable[[], float]] = {}

    async def start(self, host: Host) -> None:
        self._host = host
        self.checker = host.shared(
            self._key,
            lambda: Checker(self.config, host.pressure, self.log),
            Checker.close,
        )
        self.checker.start()
        ch = self.checker
        gauges = {
            "rss_bytes": lambda: ch.pressure.rss_bytes,
            "soft_limit_bytes": lambda: ch.soft,
            "hard_limit_bytes": lambda: ch.hard,
            "pressure_level": lambda: ch.pressure.level,
            "checks": lambda: ch.checks,
        }
        for name, read in gauges.items():
            host.counters.gauge(self.id, name, read)
        self._gauges = gauges

    async def process(self, batch: Any) -> Any | None:
        if self.checker is None or self._host is None:
            return batch
        level = self.checker.pressure.level
        if level == MemoryPressure.NONE:
            self._host.counters.add(self.id, "passed_samples", batch_len(batch))
            return batch
        n = batch_len(batch)
        if level == MemoryPressure.HARD:
            self._host.counters.add(self.id, "dropped_batches_hard_limit")
            self._host.counters.add(self.id, "dropped_samples_hard_limit", n)
        else:
            self._host.counters.add(self.id, "refused_batches")
            self._host.counters.add(self.id, "refused_samples", n)
        return None

    async def shutdown(self) -> None:
        if self._host is not None and self.checker is not None:
            for name, read in self._gauges.items():
                self._host.counters.drop_gauge(self.id, name, read)
            self._host.release(self._key)
            self.checker = None
