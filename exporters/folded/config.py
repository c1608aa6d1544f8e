"""Settings of the folded exporter (all shared with other file exporters)."""

from __future__ import annotations

from collector.exporthelper import FileExporterConfig


class FoldedConfig(FileExporterConfig):
    """directory (required), interval, max_samples, max_files: see README.md."""
