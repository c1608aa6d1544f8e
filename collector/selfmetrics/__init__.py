"""The collector's own telemetry: Prometheus metrics, /healthz and /readyz on one server."""

from collector.selfmetrics.families import CollectorMetrics
from collector.selfmetrics.server import Readiness, TelemetryServer

__all__ = ["CollectorMetrics", "Readiness", "TelemetryServer"]
