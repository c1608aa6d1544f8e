"""What may take and give ProfileSets ("profiles"), checked when plugins load and configs load."""

from __future__ import annotations

from dataclasses import replace
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from collector.config.load import load_config
from collector.errors import ConfigError, PluginError
from collector.model import WindowSettings
from collector.registry import Registry, _validate
from exporters.folded import factory as folded
from receivers.otlp import factory as otlp_receiver


def _ep(name: str, group: str = "collector.exporters") -> EntryPoint:
    return EntryPoint(name=name, value="somewhere:factory", group=group)


def test_only_exporters_take_profiles_and_nothing_gives_them() -> None:
    assert _validate(_ep("folded"), "exporter", folded).input == "profiles"
    with pytest.raises(PluginError, match="made by the pipeline's windows only"):
        _validate(
            _ep("otlp", "collector.receivers"),
            "receiver",
            replace(otlp_receiver, output="profiles"),
        )
    bad = replace(folded, kind="processor", output="symbolized")
    with pytest.raises(PluginError, match="only an exporter takes 'profiles'"):
        _validate(_ep("folded", "collector.processors"), "processor", bad)
    batches = replace(folded, input="symbolized", window=lambda c: WindowSettings())
    with pytest.raises(PluginError, match="window is only for exporters that take 'profiles'"):
        _validate(_ep("folded"), "exporter", batches)


def test_profiles_exporters_need_symbolized_data(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "receivers: {cpu: {}}\nexporters: {folded: {directory: /tmp/x}}\n"
        "service: {pipelines: {profiles: {receivers: [cpu], exporters: [folded]}}}\n"
    )
    with pytest.raises(ConfigError, match=r"exporter 'folded' takes profiles data .* gives raw "
                       r"\(add the 'symbolize' processor\)"):  # fmt: skip
        load_config([str(cfg)], Registry())
    cfg.write_text(
        "receivers: {otlp: {}}\n"
        "exporters: {folded: {directory: /tmp/x}, pprof: {directory: /tmp/x}}\n"
        "service: {pipelines: {profiles: {receivers: [otlp], exporters: [folded, pprof]}}}\n"
    )
    loaded = load_config([str(cfg)], Registry())  # the otlp receiver gives symbolized batches
    assert {s.factory.input for k, s in loaded.components.items() if k[0] == "exporter"} == {
        "profiles"
    }
