"""Config loading: each user mistake is one clear line naming file, component and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.config.expand import expand
from collector.config.load import load_config
from collector.config.redact import REDACTED, redact
from collector.errors import ConfigError
from collector.registry import Registry

DATA = Path(__file__).parent / "testdata"

pytestmark = pytest.mark.usefixtures("with_sample_plugin")


def load(*names: str):
    return load_config([str(DATA / n) for n in names], Registry())


def error_of(*names: str) -> str:
    with pytest.raises(ConfigError) as exc:
        load(*names)
    msg = str(exc.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_valid_config_with_env_expansion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUT_DIR", "/tmp/profiles-here")
    monkeypatch.delenv("FLUSH_SECONDS", raising=False)
    cfg = load("valid.yaml")
    folded = cfg.spec("exporter", "folded").config
    assert str(folded.directory) == "/tmp/profiles-here"
    assert folded.interval == 5  # the default after :- is parsed as YAML, so a number
    assert cfg.spec("receiver", "synthetic").factory.origin == "collector-sample-plugin 1.2.3"


def test_later_file_overrides_earlier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUT_DIR", "/tmp/p")
    cfg = load("valid.yaml", "override.yaml")
    assert cfg.spec("receiver", "synthetic").config.interval == 0.5
    assert cfg.spec("exporter", "folded").config is not None


def test_missing_env_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OUT_DIR", raising=False)
    msg = error_of("valid.yaml")
    assert "OUT_DIR is not set" in msg and "valid.yaml" in msg


def test_typo_names_file_component_field_and_allowed() -> None:
    msg = error_of("typo_field.yaml")
    assert "typo_field.yaml" in msg
    assert "receivers.synthetic" in msg
    assert "unknown field 'intervall'" in msg
    assert "allowed: api_token, idle, interval, work" in msg


def test_wrong_type() -> None:
    msg = error_of("wrong_type.yaml")
    assert "receivers.synthetic" in msg and "'interval'" in msg and "'often'" in msg


def test_unknown_component_type_lists_known() -> None:
    msg = error_of("unknown_type.yaml")
    assert "unknown exporter type 'flodded'" in msg
    assert "folded" in msg and "pprof" in msg and "exporters.flodded" in msg


def test_pipeline_naming_undefined_component() -> None:
    msg = error_of("undefined_component.yaml")
    assert "service.pipelines.profiles.exporters" in msg
    assert "'folded/other' is not defined" in msg


def test_receiver_in_no_pipeline() -> None:
    msg = error_of("orphan_receiver.yaml")
    assert "receivers.synthetic/unused" in msg and "in no pipeline" in msg


def test_pipeline_name_must_be_profiles() -> None:
    assert "pipelines are named 'profiles'" in error_of("bad_pipeline_name.yaml")


def test_bad_yaml_reports_line() -> None:
    msg = error_of("bad_yaml.yaml")
    assert "invalid YAML" in msg and "line" in msg


def test_missing_file() -> None:
    assert "cannot read config file" in error_of("nope.yaml")


def test_expand_rules() -> None:
    env = {"A": "1", "B": "x"}
    assert expand({"k": "${env:A}"}, "f", env) == {"k": 1}
    assert expand({"k": "v-${env:B}-${env:C:-d}"}, "f", env) == {"k": "v-x-d"}
    assert expand("$${env:A}", "f", env) == "${env:A}"
    with pytest.raises(ConfigError, match="cannot expand"):
        expand("${A}", "f", env)


def test_redact_hides_secrets() -> None:
    out = redact({"headers": {"authorization": "Bearer s3cret"}, "endpoint": "h:1", "token": "t"})
    assert out == {"headers": {"authorization": REDACTED}, "endpoint": "h:1", "token": REDACTED}
    assert "s3cret" not in repr(out)
