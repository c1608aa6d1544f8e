"""Settings every periodic file exporter shares."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field

from collector.component import ComponentConfig

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*$")


def parse_duration(value: object) -> object:
    """Seconds as a number, or a string like ``"500ms"``, ``"10s"``, ``"2m"``."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            raise ValueError(f"not a duration: {value!r} (use e.g. 10, '10s', '500ms', '1m')")
        return float(m.group(1)) * _UNITS[m.group(2) or "s"]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]


class FileExporterConfig(ComponentConfig):
    """Where and how often a periodic file exporter writes."""

    directory: Path = Field(description="Folder for the files; created if missing.")
    interval: Duration = Field(default=10.0, gt=0, description="Seconds per file window.")
    max_samples: int = Field(
        default=1_000_000, gt=0, description="Samples kept per window and profile type."
    )
    max_files: int = Field(
        default=0, ge=0, description="Keep at most this many files (oldest deleted); 0 = all."
    )
