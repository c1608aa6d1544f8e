"""Settings of the folded exporter (the file settings are shared with other file exporters)."""

from __future__ import annotations

from pydantic import Field

from collector.exporthelper import FileExporterConfig


class FoldedConfig(FileExporterConfig):
    """directory (required), interval, max_samples, max_files, span_names: see README.md."""

    span_names: bool = Field(
        default=False,
        description="Start each stack linked to a span (correlate processor) with the "
        "span's name: span;process;caller;...;leaf.",
    )
