"""traces / traces/<name> pipelines: what they may list, and one clear line when not."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from collector.config.load import load_config
from collector.errors import ConfigError
from collector.registry import Registry

BASE = {
    "receivers": {"otlp": {}, "cpu": {}},
    "processors": {"symbolize": {}, "correlate": {}},
    "exporters": {"otlp": {}, "folded": {"directory": "/tmp/x"}},
}


def load(tmp_path: Path, pipelines: dict) -> object:
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({**BASE, "service": {"pipelines": pipelines}}))
    return load_config([str(p)], Registry())


def error(tmp_path: Path, pipelines: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, pipelines)
    return str(exc.value)


PROFILES = {"receivers": ["cpu"], "processors": ["symbolize", "correlate"], "exporters": ["otlp"]}


def test_traces_pipelines_with_and_without_exporters(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        {
            "traces": {"receivers": ["otlp"]},
            "traces/fwd": {"receivers": ["otlp"], "exporters": ["otlp"]},
            "profiles": PROFILES,
        },
    )
    assert set(cfg.root.service.pipelines) == {"traces", "traces/fwd", "profiles"}


def test_traces_pipeline_takes_no_processors(tmp_path: Path) -> None:
    msg = error(
        tmp_path,
        {"traces": {"receivers": ["otlp"], "processors": ["correlate"]}, "profiles": PROFILES},
    )
    assert "traces.processors: a traces pipeline takes no processors" in msg


def test_traces_pipeline_needs_trace_capable_parts(tmp_path: Path) -> None:
    msg = error(tmp_path, {"traces": {"receivers": ["cpu"]}, "profiles": PROFILES})
    assert "traces.receivers: 'cpu' does not handle traces" in msg
    msg = error(
        tmp_path, {"traces": {"receivers": ["otlp"], "exporters": ["folded"]}, "profiles": PROFILES}
    )
    assert "traces.exporters: 'folded' does not handle traces" in msg


def test_profiles_pipeline_still_needs_an_exporter(tmp_path: Path) -> None:
    msg = error(tmp_path, {"profiles": {"receivers": ["cpu"], "processors": ["symbolize"]}})
    assert "profiles.exporters: a profiles pipeline needs an exporter" in msg


def test_other_signals_are_named(tmp_path: Path) -> None:
    msg = error(tmp_path, {"logs": {"receivers": ["otlp"]}})
    assert "'traces' or 'traces/<name>'" in msg


def test_correlate_retention_must_exceed_max_delay(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    doc = {
        **BASE,
        "processors": {"symbolize": {}, "correlate": {"max_delay": "40s"}},
        "service": {"pipelines": {"profiles": PROFILES}},
    }
    p.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as exc:
        load_config([str(p)], Registry())
    assert "processors.correlate" in str(exc.value) and "must exceed max_delay" in str(exc.value)
