"""`service` durations take the same spelling as every component's: 30, 30.5, "30s", "500ms"."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config.load import load_config
from collector.errors import ConfigError
from collector.registry import Registry

CONFIG = """
receivers:
  otlp: {}
exporters:
  folded:
    directory: /tmp/unused
service:
  pipelines:
    profiles:
      receivers: [otlp]
      exporters: [folded]
%s
"""


def service(tmp_path: Path, extra: str):
    f = tmp_path / "c.yaml"
    f.write_text(CONFIG % extra)
    return load_config([str(f)], Registry()).root.service


def test_defaults(tmp_path: Path) -> None:
    s = service(tmp_path, "")
    assert s.shutdown_timeout == 30.0
    assert s.telemetry.report_interval == 60.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("45", 45.0), ("2.5", 2.5), ("'10s'", 10.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0)],
)
def test_valid_durations(tmp_path: Path, value: str, seconds: float) -> None:
    s = service(
        tmp_path,
        f"  shutdown_timeout: {value}\n  telemetry:\n    report_interval: {value}\n",
    )
    assert s.shutdown_timeout == seconds
    assert s.telemetry.report_interval == seconds


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("shutdown_timeout", "10 parsecs", "not a duration: '10 parsecs'"),
        ("shutdown_timeout", "0", "greater than 0"),
        ("shutdown_timeout", "0s", "greater than 0"),
        ("shutdown_timeout", "-5", "greater than 0 (got -5)"),
        ("shutdown_timeout", "'-5s'", "not a duration"),
        ("shutdown_timeout", "[1]", "service.shutdown_timeout"),
        ("telemetry.report_interval", "soon", "not a duration: 'soon'"),
        ("telemetry.report_interval", "0ms", "greater than 0"),
    ],
)
def test_invalid_durations_are_one_clear_line(
    tmp_path: Path, field: str, value: str, why: str
) -> None:
    if field.startswith("telemetry."):
        extra = f"  telemetry:\n    report_interval: {value}\n"
    else:
        extra = f"  {field}: {value}\n"
    with pytest.raises(ConfigError) as err:
        service(tmp_path, extra)
    msg = str(err.value)
    assert "\n" not in msg
    assert "c.yaml" in msg and f"service.{field}" in msg, msg
    assert why in msg, msg
