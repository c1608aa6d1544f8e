"""Settings of the memory_limiter processor (defaults in one place)."""

from __future__ import annotations

from pydantic import Field, model_validator

from collector.component import ComponentConfig
from collector.config.duration import Duration


class MemoryLimiterConfig(ComponentConfig):
    # How often the process's RSS is read (/proc/self/statm); never per batch.
    check_interval: Duration = Field(1.0, gt=0)
    # The hard limit in MiB: at or above it every batch is dropped (counted), the
    # collector's memory is collected and returned to the system, and receivers stop.
    limit_mib: int = Field(ge=16)
    # The soft limit is limit_mib - spike_limit_mib: at or above it new batches are refused
    # (counted) and receivers take in less. Default: 20 % of limit_mib. It must cover what
    # the collector can grow by in one check_interval.
    spike_limit_mib: int | None = Field(None, ge=1)

    def soft_bytes(self) -> int:
        return (self.limit_mib - self.spike()) << 20

    def hard_bytes(self) -> int:
        return self.limit_mib << 20

    def spike(self) -> int:
        return self.spike_limit_mib if self.spike_limit_mib is not None else self.limit_mib // 5

    @model_validator(mode="after")
    def _soft_below_hard(self) -> MemoryLimiterConfig:
        if self.spike() >= self.limit_mib:
            raise ValueError(
                f"spike_limit_mib {self.spike()} must be below limit_mib {self.limit_mib} "
                "(the soft limit is limit_mib - spike_limit_mib)"
            )
        return self
