"""The pyroscope exporter's settings: what is refused at start-up, and secrets stay secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from exporters.pyroscope import factory
from exporters.pyroscope.labels import Labeler, profile_name, push_value
from tests.support import encoding_samples as es

ROOT = Path(__file__).resolve().parents[3]


def config(**cfg: object) -> object:
    return factory.config_model.model_validate(cfg)


@pytest.mark.parametrize(
    ("cfg", "problem"),
    [
        ({"endpoint": "pyroscope:4040"}, "not an http:// or https:// URL"),
        ({"endpoint": "https://p:4040", "tls": {"insecure": True}}, "asks for plain text"),
        ({"tls": {"server_name_override": "x"}}, "need an https:// endpoint"),
        ({"timestamps": False}, "timestamps is not used"),
        ({"basic_auth": {"username": "u", "password": "p"}, "bearer_token": "t"}, "keep one"),
        ({"bearer_token": "t", "headers": {"Authorization": "x"}}, "both set"),
        ({"tenant_id": "a", "headers": {"x-scope-orgid": "b"}}, "keep tenant_id"),
        ({"labels": {"bad-name": "x"}}, "not a label name"),
        ({"labels": {"__name__": "x"}}, "not a label name"),
        ({"labels": {"a": "x" * 3000}}, "longer than 2048"),
        ({"labels": {f"l{i}": "v" for i in range(29)}}, "more than 30 labels"),
        ({"relabel": [{"action": "replace"}]}, "needs target_label"),
        ({"relabel": [{"target_label": "x-y"}]}, "not a label name"),
        ({"relabel": [{"target_label": "__name__"}]}, "cannot set __name__"),
        ({"relabel": [{"action": "drop"}]}, "needs source_labels"),
        ({"relabel": [{"source_labels": ["a"], "regex": "(", "target_label": "b"}]}, "compile"),
        (
            {"relabel": [{"source_labels": ["a"], "action": "keep", "target_label": "b"}]},
            "takes no",
        ),
        ({"protocol": "grpc"}, "protocol"),
        ({"max_stack_depth": 1}, "max_stack_depth"),
        ({"lables": {}}, "lables"),
    ],
)
def test_refused(cfg: dict, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        config(**cfg)


def test_defaults_are_pyroscope_limits() -> None:
    c = config()
    assert c.max_bytes == 4 * 1024 * 1024  # type: ignore[attr-defined]
    assert c.max_stack_depth == 1000  # type: ignore[attr-defined]
    assert c.max_profile_samples == 16_000  # type: ignore[attr-defined]
    assert c.protocol == "push"  # type: ignore[attr-defined]


def test_profile_names() -> None:
    assert profile_name(es.CPU) == "process_cpu"
    assert profile_name(es.OFF_CPU) == "off_cpu"
    odd = es.ProfileType("9 weird-type", "alloc_space", "bytes")
    assert profile_name(odd) == "memory"
    other = es.ProfileType("9 weird-type", "x", "y")
    assert profile_name(other) == "_9_weird_type"


def test_replacement_groups_and_empty_results() -> None:
    c = config(
        relabel=[
            {"source_labels": ["__meta_process_exe"], "regex": r"/usr/(?P<dir>\w+)/(.*)",
             "target_label": "where", "replacement": "${dir}:$2:$9"},
            {"source_labels": ["__meta_process_comm"], "regex": "app", "target_label": "env",
             "replacement": ""},
        ],
        labels={"env": "prod"},
    )  # fmt: skip
    lab = Labeler(c, push_value)  # type: ignore[arg-type]
    got = dict(lab.labels(es.APP_PROC, es.CPU) or ())
    assert got["where"] == "bin:app:"  # an unknown group expands to ""
    assert "env" not in got  # an empty replacement removes the label


def test_print_config_redacts_every_secret(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        """
receivers:
  cpu: {}
processors:
  symbolize: {}
exporters:
  pyroscope:
    basic_auth: {username: me, password: hunter2-secret}
  pyroscope/b:
    bearer_token: tok-secret-123
    headers: {X-Api-Key: key-secret-456}
service:
  pipelines:
    profiles:
      receivers: [cpu]
      processors: [symbolize]
      exporters: [pyroscope, pyroscope/b]
"""
    )
    r = subprocess.run(
        [sys.executable, "-m", "collector.cli", "print-config", "--config", str(cfg)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    for secret in ("hunter2-secret", "tok-secret-123", "key-secret-456"):
        assert secret not in r.stdout + r.stderr
    assert "REDACTED" in r.stdout
    assert repr(config(bearer_token="tok-secret-123")).count("tok-secret-123") == 0
