"""Settings of the correlate processor (defaults in one place)."""

from __future__ import annotations

from pydantic import Field, model_validator

from collector.component import ComponentConfig
from collector.config.duration import Duration


class CorrelateConfig(ComponentConfig):
    # How long a batch waits for the spans its samples ran in: SDKs export a span after it
    # ends (the Python SDK's BatchSpanProcessor every 5 s), so a sample is seen first.
    max_delay: Duration = Field(default=10.0, gt=0)
    # The span index's bound: at most this many spans (oldest dropped first, counted).
    max_spans: int = Field(default=100_000, ge=1)
    # Spans whose end is older than this are dropped: a held sample can no longer need them.
    span_retention: Duration = Field(default=30.0, gt=0)
    # Samples held at once; a batch beyond it is linked with the spans already known and
    # passed on at once (counted), so memory stays bounded and the pipeline never stalls.
    max_held_samples: int = Field(default=500_000, ge=1)

    @model_validator(mode="after")
    def _retention(self) -> CorrelateConfig:
        if self.span_retention <= self.max_delay:
            raise ValueError(
                f"span_retention ({self.span_retention}s) must exceed max_delay "
                f"({self.max_delay}s): a held sample needs spans at least that old"
            )
        return self
