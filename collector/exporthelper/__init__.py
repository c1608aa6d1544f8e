"""Shared machinery of exporters that write profile files on an interval (folded, pprof)."""

from collector.exporthelper.config import (
    Duration,
    FileExporterConfig,
    FileMode,
    dir_mode,
    parse_duration,
)
from collector.exporthelper.periodic import (
    Encoder,
    PeriodicFileExporter,
    file_name,
    prepare_directory,
    write_atomically,
)

__all__ = [
    "Duration",
    "Encoder",
    "FileExporterConfig",
    "FileMode",
    "PeriodicFileExporter",
    "dir_mode",
    "file_name",
    "parse_duration",
    "prepare_directory",
    "write_atomically",
]
