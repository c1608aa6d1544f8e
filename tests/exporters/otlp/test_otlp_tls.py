"""TLS with a CA made in the test; headers reach the server and never reach the logs."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import yaml

from collector.config.load import load_config
from collector.errors import ConfigError
from collector.host import Host
from collector.registry import Registry
from exporters.otlp import factory
from tests.support.otlp_fixtures import make_batches
from tests.support.otlp_run import create, fast_retry
from tests.support.otlp_servers import GrpcProfilesServer, Recorder
from tests.support.otlp_tls import TlsFiles, make_tls

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


def _send_to_tls_server(tls: TlsFiles, tls_cfg: dict[str, object]) -> tuple[Recorder, Host]:
    async def main() -> tuple[Recorder, Host]:
        rec = Recorder()
        srv = GrpcProfilesServer(rec, tls=(tls.key.read_bytes(), tls.cert.read_bytes()))
        await srv.start()
        exp = create(
            factory,
            {
                "endpoint": f"127.0.0.1:{srv.port}",
                "tls": tls_cfg,
                "interval": "1h",
                "timeout": "1s",
                "retry_on_failure": fast_retry(max_elapsed_time="300ms"),
            },
        )
        host = Host()
        await exp.start(host)
        await exp.export(make_batches(50)[0])
        await exp.shutdown()
        await srv.stop()
        return rec, host

    return asyncio.run(main())


def test_server_name_override_is_what_gets_verified(tmp_path: Path) -> None:
    """A certificate for "collector.test" only, served on 127.0.0.1."""
    tls = make_tls(tmp_path, names="DNS:collector.test")
    rec, host = _send_to_tls_server(
        tls, {"ca_file": str(tls.ca), "server_name_override": "collector.test"}
    )
    assert rec.samples == 50 and host.counters.get("otlp", "sent_samples") == 50
    rec, host = _send_to_tls_server(tls, {"ca_file": str(tls.ca)})
    assert not rec.requests
    assert host.counters.get("otlp", "failed_samples_retries_exhausted") == 50


def test_insecure_skip_verify_sends_over_tls_without_checks(tmp_path: Path) -> None:
    """An unknown CA and a name that is not 127.0.0.1: refused normally (above), delivered
    with insecure_skip_verify, still over TLS (the server only speaks TLS)."""
    tls = make_tls(tmp_path, names="DNS:collector.test")
    rec, host = _send_to_tls_server(tls, {"insecure_skip_verify": True})
    assert rec.samples == 50 and host.counters.get("otlp", "sent_samples") == 50
    assert rec.problems == [[]]


@pytest.mark.parametrize(
    ("tls_cfg", "needle"),
    [
        (
            {"insecure_skip_verify": True, "ca_file": "{ca}"},
            "tls.insecure_skip_verify checks no certificate",
        ),
        ({"insecure": True, "ca_file": "{ca}"}, "so tls.ca_file would be ignored"),
        (
            {"insecure": True, "server_name_override": "collector.test"},
            "so tls.server_name_override would be ignored",
        ),
        (
            {"insecure": True, "cert_file": "{cert}", "key_file": "{key}"},
            "so tls.cert_file, tls.key_file would be ignored",
        ),
    ],
)
def test_tls_settings_that_cannot_apply_are_refused(
    tmp_path: Path, tls_cfg: dict[str, object], needle: str
) -> None:
    tls = make_tls(tmp_path)
    files = {"{ca}": str(tls.ca), "{cert}": str(tls.cert), "{key}": str(tls.key)}
    tls_cfg = {k: files.get(v, v) if isinstance(v, str) else v for k, v in tls_cfg.items()}
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "receivers": {"otlp": {}},
                "exporters": {"otlp": {"endpoint": "127.0.0.1:4317", "tls": tls_cfg}},
                "service": {
                    "pipelines": {"profiles": {"receivers": ["otlp"], "exporters": ["otlp"]}}
                },
            }
        )
    )
    with pytest.raises(ConfigError) as err:
        load_config([str(cfg)], Registry())
    msg = str(err.value)
    assert "\n" not in msg and "exporters.otlp" in msg and needle in msg, msg
