"""Building exporters/receivers of the OTLP area directly (without the pipeline) for tests."""

from __future__ import annotations

import logging
from typing import Any

from collector.component import CreateSettings, Factory
from collector.host import Host


def create(factory: Factory, cfg: dict[str, Any], consumer: Any = None, cid: str = "") -> Any:
    config = factory.config_model.model_validate(cfg)
    cid = cid or factory.type
    return factory.create(CreateSettings(cid, logging.getLogger(f"test.{cid}"), consumer), config)


def fast_retry(**over: Any) -> dict[str, Any]:
    r = {"initial_interval": "10ms", "max_interval": "50ms", "max_elapsed_time": "5s"}
    r.update(over)
    return r


__all__ = ["Host", "create", "fast_retry"]
