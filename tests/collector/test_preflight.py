"""Preflight refuses what the BPF side cannot handle before anything is loaded.

The machine really is x86-64; another architecture is simulated by patching
``platform.machine``, which is what preflight reads (as ``uname -m`` does).
"""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from collector import cli, preflight
from collector.errors import EnvironmentProblem

CPU_PIPELINE = """
receivers:
  cpu: {}
processors:
  symbolize: {}
exporters:
  folded:
    directory: %s
service:
  pipelines:
    profiles:
      receivers: [cpu]
      processors: [symbolize]
      exporters: [folded]
"""

OTLP_PIPELINE = """
receivers:
  otlp:
    grpc: null
    http:
      endpoint: 127.0.0.1:0
exporters:
  folded:
    directory: %s
service:
  pipelines:
    profiles:
      receivers: [otlp]
      exporters: [folded]
"""


@pytest.fixture(autouse=True)
def _keep_test_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    # main() points the root logger at this test's stderr; later tests must not inherit that.
    monkeypatch.setattr(cli.logs, "setup", lambda level: None)


@pytest.fixture
def runner_calls(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Stands in for the event loop that would start the pipeline (and load BPF)."""
    calls: list[object] = []

    def fake_runner():
        def run(coro):
            coro.close()  # never awaited: nothing starts
            calls.append(coro)
            return 0

        return run

    monkeypatch.setattr(cli, "_runner", fake_runner)
    return calls


def test_this_machine_passes() -> None:
    assert platform.machine() == "x86_64"  # the project's machines; CI runs here too
    preflight.check_architecture()


@pytest.mark.parametrize("machine", ["aarch64", "riscv64", "i686", ""])
def test_other_architectures_are_refused(monkeypatch: pytest.MonkeyPatch, machine: str) -> None:
    monkeypatch.setattr(platform, "machine", lambda: machine)
    with pytest.raises(EnvironmentProblem) as err:
        preflight.check_bpf(needs_tracefs=False)
    assert err.value.exit_code == 3
    msg = str(err.value)
    assert repr(machine or "unknown") in msg and "x86_64" in msg
    assert "\n" not in msg


def test_architecture_is_checked_before_privileges(monkeypatch: pytest.MonkeyPatch) -> None:
    # Even a user without capabilities hears about the architecture first: it is the
    # problem no amount of sudo fixes.
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(preflight, "has_bpf_privileges", lambda: False)
    with pytest.raises(EnvironmentProblem, match="architecture 'aarch64'"):
        preflight.check_bpf(needs_tracefs=True)


def test_cli_exits_3_with_one_line_before_starting(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    runner_calls: list[object],
) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text(CPU_PIPELINE % (tmp_path / "out"))
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    rc = cli.main(["--config", str(cfg)])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert err.count("\n") == 1 and err.startswith("collector: cannot run here: processor")
    assert "'aarch64'" in err
    assert runner_calls == []  # the pipeline (and with it any BPF program) never started
    assert not (tmp_path / "out").exists()


def test_pipeline_without_bpf_is_not_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, runner_calls: list[object]
) -> None:
    # The otlp receiver is plain Python: it runs on any architecture.
    cfg = tmp_path / "p.yaml"
    cfg.write_text(OTLP_PIPELINE % (tmp_path / "out"))
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert cli.main(["--config", str(cfg)]) == 0
    assert len(runner_calls) == 1


def test_unreadable_proc_status_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_proc(path: str, *a: object, **kw: object):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(preflight, "open", no_proc, raising=False)
    with pytest.raises(EnvironmentProblem, match="cannot read /proc/self/status"):
        preflight.has_bpf_privileges()
