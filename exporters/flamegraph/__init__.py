"""The ``flamegraph`` exporter: interactive HTML and SVG flame graphs, no backend needed."""

from collector.component import Factory
from collector.exporthelper import FileExporterConfig
from exporters.flamegraph.config import FlamegraphConfig
from exporters.flamegraph.exporter import FlamegraphExporter

factory = Factory(
    type="flamegraph",
    kind="exporter",
    config_model=FlamegraphConfig,
    create=FlamegraphExporter,
    input="profiles",
    window=FileExporterConfig.window,
    description="Writes an interactive HTML flame graph (d3-flame-graph) and an SVG per window.",
)
