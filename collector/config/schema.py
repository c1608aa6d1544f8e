"""The top-level config shape (OTel Collector style) and component ids."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from collector.config.duration import Duration

_TYPE = r"[a-z][a-z0-9_]*"
ID_RE = re.compile(rf"^({_TYPE})(?:/([A-Za-z0-9_.\-]+))?$")
PIPELINE_RE = re.compile(r"^(profiles|traces)(?:/[A-Za-z0-9_.\-]+)?$")


def pipeline_signal(name: str) -> str:
    """``profiles`` or ``traces``: what a pipeline named ``name`` carries."""
    return name.split("/", 1)[0]


def split_id(component_id: str) -> tuple[str, str]:
    """``type/name`` -> (type, name); raises ValueError for a malformed id."""
    m = ID_RE.match(component_id)
    if not m:
        raise ValueError(
            f"component id {component_id!r} must be 'type' or 'type/name' "
            "(type in lower_snake_case)"
        )
    return m.group(1), m.group(2) or ""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PipelineConfig(_Strict):
    receivers: list[str] = Field(min_length=1)
    processors: list[str] = []
    # Required for profiles pipelines (checked in load); a traces pipeline may have none:
    # its spans then only feed the correlate processors.
    exporters: list[str] = []


class LogsConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsConfig(_Strict):
    # Prometheus /metrics, /healthz and /readyz on host:port; loopback unless asked for more.
    # "" or "none" turns the endpoint off. Port 0 picks a free port (logged).
    address: str = "127.0.0.1:8888"

    @field_validator("address")
    @classmethod
    def _host_port(cls, v: str) -> str:
        v = v.strip()
        if v.lower() in ("", "none"):
            return ""
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"{v!r} is not host:port (e.g. 127.0.0.1:8888), '' or 'none'")
        return v

    def host_port(self) -> tuple[str, int]:
        host, _, port = self.address.rpartition(":")
        return host.strip("[]"), int(port)


class TelemetryConfig(_Strict):
    logs: LogsConfig = LogsConfig()
    metrics: MetricsConfig = MetricsConfig()
    # How often counter changes (drops, lost stacks, files written) are logged.
    report_interval: Duration = Field(default=60.0, gt=0)


class ServiceConfig(_Strict):
    pipelines: dict[str, PipelineConfig] = Field(min_length=1)
    telemetry: TelemetryConfig = TelemetryConfig()
    # Bound of each pipeline's input queue and each exporter's queue, in batches.
    queue_size: int = Field(default=64, ge=1)
    # How long shutdown waits for queues to drain before counting what is left as dropped.
    shutdown_timeout: Duration = Field(default=30.0, gt=0)

    @field_validator("pipelines")
    @classmethod
    def _names(cls, v: dict[str, PipelineConfig]) -> dict[str, PipelineConfig]:
        for name in v:
            if not PIPELINE_RE.match(name):
                raise ValueError(
                    f"pipeline {name!r}: pipelines are named 'profiles', 'profiles/<name>', "
                    "'traces' or 'traces/<name>'"
                )
        return v


class RootConfig(_Strict):
    receivers: dict[str, dict[str, Any] | None] = {}
    processors: dict[str, dict[str, Any] | None] = {}
    exporters: dict[str, dict[str, Any] | None] = {}
    service: ServiceConfig
