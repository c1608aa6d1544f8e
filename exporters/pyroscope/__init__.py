"""The pyroscope exporter: profiles to Grafana Pyroscope (Connect Push or the /ingest API)."""

from __future__ import annotations

from collector.component import CreateSettings, Factory
from collector.sending.exporter import window_settings
from exporters.pyroscope.config import PyroscopeConfig
from exporters.pyroscope.exporter import PyroscopeExporter


def create(settings: CreateSettings, config: PyroscopeConfig) -> PyroscopeExporter:
    return PyroscopeExporter(settings, config)


factory = Factory(
    type="pyroscope",
    kind="exporter",
    config_model=PyroscopeConfig,
    create=create,
    input="profiles",
    window=window_settings,
    description="Profiles to Grafana Pyroscope: pprof per service over Push (Connect) or /ingest.",
)
