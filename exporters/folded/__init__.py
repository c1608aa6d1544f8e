"""The ``folded`` exporter: collapsed stacks files for flamegraph.pl, speedscope, inferno."""

from collector.component import Factory
from collector.exporthelper import FileExporterConfig
from exporters.folded.config import FoldedConfig
from exporters.folded.exporter import FoldedExporter

factory = Factory(
    type="folded",
    kind="exporter",
    config_model=FoldedConfig,
    create=FoldedExporter,
    input="profiles",
    window=FileExporterConfig.window,
    description="Writes collapsed stacks (process;caller;...;leaf count) to *.folded files.",
)
