"""The ``pprof`` exporter: gzip-compressed profile.proto files for `go tool pprof` and friends."""

from collector.component import Factory
from collector.exporthelper import FileExporterConfig
from exporters.pprof.config import PprofConfig
from exporters.pprof.exporter import PprofExporter

factory = Factory(
    type="pprof",
    kind="exporter",
    config_model=PprofConfig,
    create=PprofExporter,
    input="profiles",
    window=FileExporterConfig.window,
    description="Writes gzip-compressed pprof profiles to *.pb.gz files.",
)
