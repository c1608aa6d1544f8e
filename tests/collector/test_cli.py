"""The CLI as a user runs it: real subprocesses, real plugin packages, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from collector import memory
from tests.support.collector_run import ROOT, CollectorProcess, start_collector

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

# The same pipeline with a second, fast folded exporter whose files show, without a sleep,
# that batches are flowing before the signal is sent.
LIVE = """
exporters:
  folded/live:
    directory: %s
    interval: 0.1
service:
  pipelines:
    profiles:
      receivers: [synthetic]
      exporters: [folded, folded/live]
"""


def run(args: list[str], plugin_dirs: list[Path], **kw) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(map(str, plugin_dirs)), SYNTH_TOKEN="hunter2")
    return subprocess.run(COLLECTOR + args, capture_output=True, text=True, env=env, cwd=ROOT, **kw)


def start_pipeline(plugin_dir: Path, tmp_path: Path, token: str, *more: Path) -> CollectorProcess:
    """The collector running the synthetic plugin into tmp_path/out, started as a user does."""
    cfg = tmp_path / "p.yaml"
    cfg.write_text(PIPELINE % (tmp_path / "out"))
    return start_collector(cfg, *more, env={"PYTHONPATH": str(plugin_dir), "SYNTH_TOKEN": token})


def folded_counts(directory: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in directory.glob("*.folded"):
        for ln in f.read_text().splitlines():
            stack, n = ln.rsplit(" ", 1)
            counts[stack] = counts.get(stack, 0) + int(n)
    return counts


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
    out, live = tmp_path / "out", tmp_path / "live"
    (tmp_path / "live.yaml").write_text(LIVE % live)
    col = start_pipeline(sample_plugin_dir, tmp_path, "hunter2", tmp_path / "live.yaml")
    col.wait_for(
        lambda: folded_counts(live).get("synthetic;main;idle", 0) > 5, "6 idle samples written"
    )
    rc = col.stop(signal.SIGINT)
    assert rc == 0, col.stderr()
    files = list(out.glob("*.folded"))
    assert len(files) == 1  # the 30 s interval never fired: this is the shutdown flush
    counts = folded_counts(out)
    work, idle = counts["synthetic;main;work"], counts["synthetic;main;idle"]
    assert work == 3 * idle  # the plugin sends 3 work per idle sample
    # Everything the fast exporter saw before the signal, and the shutdown batch, is there.
    assert idle >= folded_counts(live)["synthetic;main;idle"] > 5
    assert "hunter2" not in col.stderr() + col.stdout()
    lines = col.stderr().splitlines()
    assert lines and all(ln.startswith("time=") for ln in lines)  # one structured line each


def test_sigterm_also_exits_zero(sample_plugin_dir: Path, tmp_path: Path) -> None:
    col = start_pipeline(sample_plugin_dir, tmp_path, token="x")
    rc = col.stop(signal.SIGTERM)
    assert rc == 0, col.stderr()
    # Even a signal right after start flushes: the receiver's last batch reaches the file.
    counts = folded_counts(tmp_path / "out")
    assert counts["synthetic;main;work"] == 3 * counts["synthetic;main;idle"] > 0


def test_a_collector_that_cannot_start_fails_the_helper(tmp_path: Path) -> None:
    """start_collector reports the exit and the stderr instead of waiting forever."""
    cfg = tmp_path / "p.yaml"
    cfg.write_text((PIPELINE % (tmp_path / "out")).replace("synthetic", "nonexistent"))
    with pytest.raises(AssertionError, match=r"exited 2 before it started(.|\n)*config error"):
        start_collector(cfg)


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


@pytest.mark.parametrize("switch", ["1", "0"])
def test_malloc_tuning_is_logged_and_can_be_switched_off(
    sample_plugin_dir: Path, tmp_path: Path, switch: str
) -> None:
    """collector/memory.py: set before the loop starts, said once in the log, off with the
    benchmark's switch (glibc's defaults)."""
    cfg = tmp_path / "p.yaml"
    cfg.write_text(PIPELINE % (tmp_path / "out"))
    env = {"PYTHONPATH": str(sample_plugin_dir), "SYNTH_TOKEN": "x", memory.ENV_SWITCH: switch}
    col = start_collector(cfg, env=env)
    assert col.stop() == 0, col.stderr()
    tuned = (
        f"malloc arena_max={memory.ARENA_MAX} mmap_threshold={memory.MMAP_THRESHOLD} "
        f"trim_threshold={memory.TRIM_THRESHOLD}"
    )
    lines = [ln for ln in col.stderr().splitlines() if "msg='malloc " in ln]
    assert len(lines) == 1, col.stderr()
    assert (tuned if switch == "1" else "malloc defaults (not tuned)") in lines[0]
