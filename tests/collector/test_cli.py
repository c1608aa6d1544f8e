"""The CLI as a user runs it: real subprocesses, real plugin packages, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR = [sys.executable, "-m", "collector.cli"]

PIPELINE = """
receivers:
  synthetic:
    interval: 0.05
    api_token: ${env:SYNTH_TOKEN}
exporters:
  folded:
    directory: %s
    interval: 30
service:
  pipelines:
    profiles:
      receivers: [synthetic]
      exporters: [folded]
"""


def run(args: list[str], plugin_dirs: list[Path], **kw) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(map(str, plugin_dirs)), SYNTH_TOKEN="hunter2")
    return subprocess.run(COLLECTOR + args, capture_output=True, text=True, env=env, cwd=ROOT, **kw)


def start_pipeline(plugin_dir: Path, tmp_path: Path, token: str) -> subprocess.Popen[str]:
    """The collector running the synthetic plugin into tmp_path/out, as a user starts it."""
    cfg = tmp_path / "p.yaml"
    cfg.write_text(PIPELINE % (tmp_path / "out"))
    return subprocess.Popen(
        [*COLLECTOR, "--config", str(cfg)],
        env=dict(os.environ, PYTHONPATH=str(plugin_dir), SYNTH_TOKEN=token),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_components_lists_builtins_and_plugin_origin(sample_plugin_dir: Path) -> None:
    res = run(["components"], [sample_plugin_dir])
    assert res.returncode == 0, res.stderr
    lines = {ln.split()[0]: ln for ln in res.stdout.splitlines() if ln.startswith("  ")}
    assert "collector-sample-plugin 1.2.3" in lines["synthetic"]
    for builtin in ("folded", "pprof"):
        assert "built-in" in lines[builtin]


def test_broken_plugins_are_named(sample_plugin_dir: Path, broken_plugin_dir: Path) -> None:
    res = run(["components"], [sample_plugin_dir, broken_plugin_dir])
    assert res.returncode == 2
    assert "synthetic" in res.stdout  # good plugins are still listed
    errs = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert any(
        "'broken_import'" in e and "failed to load" in e and "ModuleNotFoundError" in e
        for e in errs
    )
    assert any("'not_a_factory'" in e and "not a collector.component.Factory" in e for e in errs)
    assert any("collector-broken-plugin 0.0.1" in e for e in errs)


def test_pipeline_with_plugin_runs_and_flushes_on_sigint(
    sample_plugin_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = start_pipeline(sample_plugin_dir, tmp_path, token="hunter2")
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    files = list(out.glob("*.folded"))
    assert len(files) == 1  # the 30 s interval never fired: this is the shutdown flush
    counts = dict(ln.rsplit(" ", 1) for ln in files[0].read_text().splitlines())
    work, idle = int(counts["synthetic;main;work"]), int(counts["synthetic;main;idle"])
    assert work == 3 * idle and idle > 5  # the plugin sends 3 work per idle sample
    assert "hunter2" not in stderr + stdout
    assert all(ln.startswith("time=") for ln in stderr.splitlines())  # one structured line each


def test_sigterm_also_exits_zero(sample_plugin_dir: Path, tmp_path: Path) -> None:
    proc = start_pipeline(sample_plugin_dir, tmp_path, token="x")
    time.sleep(1.0)
    proc.terminate()
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert list((tmp_path / "out").glob("*.folded"))


def test_validate_and_print_config_redact_secrets(sample_plugin_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text(PIPELINE % (tmp_path / "out"))
    res = run(["validate", "--config", str(cfg)], [sample_plugin_dir])
    assert res.returncode == 0 and "config ok" in res.stdout
    assert not (tmp_path / "out").exists()  # validate starts nothing
    res = run(["print-config", "--config", str(cfg)], [sample_plugin_dir])
    assert res.returncode == 0, res.stderr
    assert "hunter2" not in res.stdout
    assert "api_token: '[REDACTED]'" in res.stdout
    assert "interval: 0.05" in res.stdout


def test_config_error_exit_code_and_one_line(sample_plugin_dir: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text((PIPELINE % (tmp_path / "out")).replace("interval: 0.05", "intervall: 1"))
    res = run(["--config", str(cfg)], [sample_plugin_dir])
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert res.stderr.startswith("collector: config error:")
    assert "receivers.synthetic" in res.stderr and "intervall" in res.stderr


@pytest.mark.parametrize("args", [[], ["validate"]])
def test_missing_config_flag(args: list[str]) -> None:
    res = run(args, [])
    assert res.returncode == 2
