"""Settings of the pprof exporter."""

from __future__ import annotations

from pydantic import Field

from collector.exporthelper import FileExporterConfig


class PprofConfig(FileExporterConfig):
    """directory (required), interval, max_samples, max_files, gzip_level: see README.md."""

    gzip_level: int = Field(default=6, ge=1, le=9, description="gzip compression level.")
