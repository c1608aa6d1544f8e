"""Settings every periodic file exporter shares."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from collector.component import ComponentConfig
from collector.config.duration import Duration, parse_duration
from collector.model import WindowSettings

__all__ = ["Duration", "FileExporterConfig", "parse_duration"]


class FileExporterConfig(ComponentConfig):
    """Where and how often a periodic file exporter writes."""

    directory: Path = Field(description="Folder for the files; created if missing.")
    interval: Duration = Field(default=10.0, gt=0, description="Seconds per file window.")
    max_samples: int = Field(
        default=1_000_000,
        gt=0,
        description="A window of one profile type that reaches this many samples is closed "
        "early (its file is written; nothing is dropped).",
    )
    max_files: int = Field(
        default=0, ge=0, description="Keep at most this many files (oldest deleted); 0 = all."
    )

    def window(self) -> WindowSettings:
        """How the pipeline cuts this exporter's windows."""
        return WindowSettings(self.interval, self.max_samples)
