from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from collector.exporthelper import FileExporterConfig


def test_defaults_and_duration_strings(tmp_path: Path) -> None:
    c = FileExporterConfig(directory=tmp_path)
    assert (c.interval, c.max_samples, c.max_files) == (10.0, 1_000_000, 0)
    assert FileExporterConfig(directory=tmp_path, interval="500ms").interval == 0.5
    assert FileExporterConfig(directory=tmp_path, interval="2m").interval == 120.0
    assert FileExporterConfig(directory=tmp_path, interval=3).interval == 3.0


@pytest.mark.parametrize(
    "bad",
    [
        {},  # directory is required
        {"directory": "/x", "interval": 0},
        {"directory": "/x", "interval": "ten seconds"},
        {"directory": "/x", "max_samples": 0},
        {"directory": "/x", "directroy": "/y"},  # typo: extra=forbid
    ],
)
def test_bad_settings_are_rejected(bad: dict) -> None:
    with pytest.raises(ValidationError):
        FileExporterConfig(**bad)
