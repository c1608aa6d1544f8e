"""Retries with jittered exponential backoff (as the OTel Collector's exporterhelper does).

Transports raise ``RetryableError`` (optionally with the server's requested delay) or
``PermanentError``; anything permanent is never retried.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from collector.sending.settings import RetrySettings

T = TypeVar("T")


class PermanentError(Exception):
    """The server refused the data for good (bad request, auth, ...): do not retry."""


class RetryableError(Exception):
    """A transient failure; ``retry_after`` is the server's requested delay in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Backoff:
    def __init__(self, s: RetrySettings, rand: Callable[[], float] = random.random) -> None:
        self.s = s
        self.rand = rand
        self.interval = s.initial_interval

    def next_delay(self) -> float:
        rf = self.s.randomization_factor
        delay = self.interval * (1 - rf + 2 * rf * self.rand())
        self.interval = min(self.interval * self.s.multiplier, self.s.max_interval)
        return delay


async def send_with_retry(
    attempt: Callable[[], Awaitable[T]],
    settings: RetrySettings,
    *,
    on_retry: Callable[[RetryableError, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``attempt`` until it succeeds, fails permanently, or the time budget is spent.

    Raises PermanentError at once, or the last RetryableError when retries are disabled or
    the next wait would end after ``max_elapsed_time``.
    """
    start = clock()
    backoff = Backoff(settings)
    while True:
        try:
            return await attempt()
        except RetryableError as e:
            if not settings.enabled:
                raise
            delay = backoff.next_delay()
            if e.retry_after is not None:
                # The server knows its load: never come back sooner than it asked.
                delay = max(delay, e.retry_after)
            budget = settings.max_elapsed_time
            if budget and clock() - start + delay > budget:
                raise
            if on_retry is not None:
                on_retry(e, delay)
            await asyncio.sleep(delay)
