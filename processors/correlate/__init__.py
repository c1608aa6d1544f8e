"""The ``correlate`` processor: links each profile sample to the span running on its thread."""

from __future__ import annotations

from collector.component import CreateSettings, Factory
from processors.correlate.config import CorrelateConfig
from processors.correlate.processor import CorrelateProcessor


def _create(settings: CreateSettings, config: CorrelateConfig) -> CorrelateProcessor:
    return CorrelateProcessor(settings, config)


factory = Factory(
    type="correlate",
    kind="processor",
    config_model=CorrelateConfig,
    create=_create,
    input="symbolized",
    output="symbolized",
    description="Link samples to the spans (trace_id, span_id) a traces pipeline receives.",
)

__all__ = ["CorrelateConfig", "CorrelateProcessor", "factory"]
