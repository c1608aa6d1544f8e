"""TLS with a CA made in the test; headers reach the server and never reach the logs."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from collector.host import Host
from exporters.otlp import factory
from tests.support.otlp_fixtures import make_batches
from tests.support.otlp_run import create, fast_retry
from tests.support.otlp_servers import GrpcProfilesServer, Recorder
from tests.support.otlp_tls import make_tls

SECRET = "Bearer s3cr3t-t0ken-9f8e7d"


def test_tls_and_secret_headers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tls = make_tls(tmp_path)

    async def main() -> tuple[Recorder, Host, object]:
        rec = Recorder()
        srv = GrpcProfilesServer(rec, tls=(tls.key.read_bytes(), tls.cert.read_bytes()))
        await srv.start()
        exp = create(
            factory,
            {
                "endpoint": f"127.0.0.1:{srv.port}",
                "tls": {"ca_file": str(tls.ca)},
                "headers": {"Authorization": SECRET, "X-Scope-OrgID": "tenant-a"},
                "interval": "1h",
                "retry_on_failure": fast_retry(),
            },
        )
        host = Host()
        await exp.start(host)
        await exp.export(make_batches(100)[0])
        await exp.shutdown()
        await srv.stop()
        logging.getLogger("test.otlp").info("config %r %s", exp.config, exp.config)
        return rec, host, exp.config

    with caplog.at_level(logging.DEBUG):
        rec, host, config = asyncio.run(main())
    assert host.counters.get("otlp", "sent_samples") == 100
    assert rec.metadata[0]["authorization"] == SECRET
    assert rec.metadata[0]["x-scope-orgid"] == "tenant-a"
    assert SECRET not in caplog.text and "s3cr3t" not in caplog.text
    assert "s3cr3t" not in config.model_dump_json()  # what print-config shows
    assert "s3cr3t" not in repr(config)


def test_tls_refuses_unknown_ca(tmp_path: Path) -> None:
    """Without the CA the handshake fails: the exporter retries then gives up, counted."""
    tls = make_tls(tmp_path)

    async def main() -> Host:
        rec = Recorder()
        srv = GrpcProfilesServer(rec, tls=(tls.key.read_bytes(), tls.cert.read_bytes()))
        await srv.start()
        exp = create(
            factory,
            {
                "endpoint": f"127.0.0.1:{srv.port}",
                "interval": "1h",
                "timeout": "1s",
                "retry_on_failure": fast_retry(max_elapsed_time="300ms"),
            },
        )
        host = Host()
        await exp.start(host)
        await exp.export(make_batches(10)[0])
        await exp.shutdown()
        await srv.stop()
        assert not rec.requests
        return host

    host = asyncio.run(main())
    assert host.counters.get("otlp", "failed_samples_retries_exhausted") == 10


def test_print_config_redacts_headers(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.support.collector_run import ROOT

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "receivers:\n  otlp: {}\nexporters:\n  otlp:\n    endpoint: 127.0.0.1:4317\n"
        f"    headers:\n      authorization: {SECRET}\n"
        "service:\n  pipelines:\n    profiles:\n      receivers: [otlp]\n      exporters: [otlp]\n"
    )
    env = dict(os.environ)
    out = subprocess.run(
        [sys.executable, "-m", "collector.cli", "print-config", "--config", str(cfg)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "authorization" in out.stdout
    assert "s3cr3t" not in out.stdout + out.stderr
