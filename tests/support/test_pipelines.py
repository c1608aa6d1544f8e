"""The pipeline builder's text goes through the collector's own config loader as asked."""

from __future__ import annotations

from pathlib import Path

import yaml

from collector.config.load import load_config
from collector.registry import Registry
from tests.support.pipelines import profiles_yaml


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(text)
    return load_config([str(cfg)], Registry())


def test_values_that_need_quoting_arrive_as_written(tmp_path: Path) -> None:
    # A regex with YAML indicators and a directory with a space, a colon and a '#'.
    out = tmp_path / "out: #1 dir"
    comm = "^(py_loop|warm)$ #"
    text = profiles_yaml(
        out, {"cpu": {"frequency": 199, "comm": comm, "unwind": "tables"}}, exporters=("pprof",)
    )
    loaded = _load(tmp_path, text)
    cpu = loaded.spec("receiver", "cpu").config
    assert (cpu.frequency, cpu.comm, cpu.unwind) == (199, comm, "tables")
    assert Path(loaded.spec("exporter", "pprof").config.directory) == out
    assert loaded.root.service.telemetry.metrics.address == ""  # "none": no endpoint


def test_exporters_processors_and_telemetry(tmp_path: Path) -> None:
    text = profiles_yaml(
        tmp_path,
        {"cpu": {"frequency": 99}},
        exporters=("folded", "pprof"),
        interval="1s",
        processors={
            "symbolize": {},
            "k8s": {"endpoint": "http://127.0.0.1:1", "refresh_interval": 1},
        },
        metrics_address=None,
        dir_per_exporter=True,
    )
    loaded = _load(tmp_path, text)
    pipe = loaded.root.service.pipelines["profiles"]
    assert (pipe.receivers, pipe.processors, pipe.exporters) == (
        ["cpu"],
        ["symbolize", "k8s"],
        ["folded", "pprof"],
    )
    for name in ("folded", "pprof"):
        exporter = loaded.spec("exporter", name).config
        assert (Path(exporter.directory), exporter.interval) == (tmp_path / name, 1.0)
    # No telemetry section: the collector's default endpoint stays.
    assert loaded.root.service.telemetry.metrics.address == "127.0.0.1:8888"


def test_interval_none_keeps_the_exporters_default(tmp_path: Path) -> None:
    text = profiles_yaml(tmp_path, {"cpu": {}}, interval=None)
    assert "interval" not in yaml.safe_load(text)["exporters"]["folded"]
    folded = _load(tmp_path, text).spec("exporter", "folded").config
    assert folded.interval == type(folded).model_fields["interval"].default
    text = profiles_yaml(tmp_path, {"cpu": {}}, interval=600)
    assert _load(tmp_path, text).spec("exporter", "folded").config.interval == 600
