"""Reload on SIGHUP through the real CLI: a bad config is refused with one line and profiles
keep flowing; a good one that adds an exporter takes effect while the unchanged cpu receiver
keeps running (its BPF program is loaded once: one "bpf program loaded" line); a changed
receiver is replaced on the same port; a reload whose new part cannot start restores the
old config.
"""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import grpc
import pytest

from collector.otlp import encode_profile_set
from tests.support.collector_run import CollectorProcess, start_collector
from tests.support.otlp_fixtures import build, make_batches
from tests.support.otlp_servers import free_port
from tests.support.pipelines import profiles_yaml
from tests.support.workloads import build as build_workload
from tests.support.workloads import run_for_cpu_time

PROFILES = "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"


def cpu_config(out: Path, exporters: tuple[str, ...] = ("folded",)) -> str:
    """cpu -> symbolize -> the exporters, each writing to out/<exporter> every second."""
    return profiles_yaml(
        out, {"cpu": {"frequency": 99}}, exporters=exporters, interval="1s", dir_per_exporter=True
    )


def _hup_and_wait(col: CollectorProcess, marker: str, count: int) -> str:
    """SIGHUP, then wait for the count-th line containing ``marker``; returns the logs."""
    col.proc.send_signal(signal.SIGHUP)
    col.wait_for(lambda: col.logs().count(marker) >= count, f"{count}x {marker!r}")
    return col.logs()


def _lines(text: str, marker: str) -> list[str]:
    return [ln for ln in text.splitlines() if marker in ln]


@pytest.mark.bpf
@pytest.mark.slow
def test_reload_keeps_the_cpu_receiver_and_adds_an_exporter(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    out = tmp_path / "out"
    cfg.write_text(cpu_config(out))
    shares = build_workload("cpu_shares")
    col = start_collector(cfg)
    try:
        run_for_cpu_time([str(shares), "1"])
        col.wait_for(lambda: any((out / "folded").glob("*.folded")), "a folded file")

        # A typo: refused with one line; the running pipeline goes on writing.
        cfg.write_text(cpu_config(out).replace("frequency", "frequncy"))
        logs = _hup_and_wait(col, "reload rejected", 1)
        rejected = _lines(logs, "reload rejected")
        assert len(rejected) == 1 and "frequncy" in rejected[0], rejected
        before = len(list((out / "folded").glob("*.folded")))
        run_for_cpu_time([str(shares), "1"])
        col.wait_for(
            lambda: len(list((out / "folded").glob("*.folded"))) > before,
            "a folded file after the rejected reload",
        )

        # A good config that adds pprof: it takes effect, the cpu receiver is kept.
        cfg.write_text(cpu_config(out, ("folded", "pprof")))
        logs = _hup_and_wait(col, "reloaded config", 1)
        done = _lines(logs, "reloaded config")[0]
        assert "kept=" in done and "receivers/cpu" in done.split("kept=")[1].split()[0], done
        assert "exporters/pprof" in done.split("added=")[1].split()[0], done
        run_for_cpu_time([str(shares), "2"])
        col.wait_for(lambda: any((out / "pprof").glob("*.pb.gz")), "a pprof file")
    finally:
        rc = col.stop()
    logs = col.logs()
    assert rc == 0, logs
    # One BPF load and one receiver start over the whole run: never recompiled.
    assert len(_lines(logs, "bpf program loaded")) == 1, _lines(logs, "bpf program loaded")
    assert len(_lines(logs, "receiver started id=cpu")) == 1
    # The rebuilt pipeline's symbolize started before the old one stopped, so the shared
    # symbolizer (and its kernel table) stayed loaded.
    sym = [ln for ln in _lines(logs, "totals component=processors/symbolize") if "kallsyms" in ln]
    assert sym and "kallsyms_loads=1" in sym[-1], sym


OTLP = """
receivers:
  otlp:
    grpc:
      endpoint: 127.0.0.1:%(grpc)d
    http: null
    max_recv_msg_size: %(max)d
exporters:
  folded:
    directory: %(out)s
    interval: 200ms
%(extra)s
service:
  telemetry:
    metrics:
      address: none
  pipelines:
    profiles:
      receivers: [otlp]
      exporters: [folded%(more)s]
"""


def _send(port: int, n: int) -> None:
    body = encode_profile_set(build(make_batches(n))).SerializeToString()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        ch.unary_unary(PROFILES)(body, timeout=10)


def test_reload_replaces_a_changed_receiver_and_survives_a_failed_start(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    ports = {"grpc": free_port(), "out": tmp_path / "out", "extra": "", "more": "", "max": 1 << 20}
    cfg.write_text(OTLP % ports)
    col = start_collector(cfg)
    try:
        _send(ports["grpc"], 100)
        # A changed receiver setting: replaced, on the same port (the old one let go first).
        cfg.write_text(OTLP % {**ports, "max": 2 << 20})
        logs = _hup_and_wait(col, "reloaded config", 1)
        done = _lines(logs, "reloaded config")[-1]
        assert "receivers/otlp" in done.split("replaced=")[1].split()[0], done
        assert "exporters/folded" in done.split("kept=")[1].split()[0], done
        _send(ports["grpc"], 100)
        # A new exporter whose start fails (its directory is a file): the old config returns.
        (tmp_path / "blocker").write_text("a file, not a folder")
        extra = f"  folded/2:\n    directory: {tmp_path / 'blocker'}\n"
        cfg.write_text(OTLP % {**ports, "max": 2 << 20, "extra": extra, "more": ", folded/2"})
        logs = _hup_and_wait(col, "previous config was restored", 1)
        assert "folded/2" in _lines(logs, "previous config was restored")[-1], logs
        _send(ports["grpc"], 100)  # still served
        time.sleep(0.5)
    finally:
        rc = col.stop()
    logs = col.logs()
    assert rc == 0, logs
    total = [ln for ln in logs.splitlines() if "totals component=receivers/otlp" in ln]
    assert total and "accepted_samples=300" in total[-1], total
    written = [ln for ln in logs.splitlines() if "totals component=exporters/folded" in ln]
    assert written and "samples_written=300" in written[-1], written
    with socket.socket() as s:  # the port was let go at exit
        s.bind(("127.0.0.1", ports["grpc"]))
