"""The ``memory_limiter`` processor: soft and hard RSS limits for the whole collector."""

from __future__ import annotations

from collector.component import CreateSettings, Factory
from processors.memory_limiter.config import MemoryLimiterConfig
from processors.memory_limiter.processor import MemoryLimiterProcessor


def _create(settings: CreateSettings, config: MemoryLimiterConfig) -> MemoryLimiterProcessor:
    return MemoryLimiterProcessor(settings, config)


factory = Factory(
    type="memory_limiter",
    kind="processor",
    config_model=MemoryLimiterConfig,
    create=_create,
    input="any",
    output="any",
    description="Refuse batches above a soft RSS limit, drop them above a hard one.",
)

__all__ = ["MemoryLimiterConfig", "MemoryLimiterProcessor", "factory"]
