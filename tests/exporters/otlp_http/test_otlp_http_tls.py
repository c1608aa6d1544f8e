"""HTTPS with a CA made by openssl in the test: every tls setting is honoured or refused.

The server certificate is for the name "collector.test" only (not for 127.0.0.1), so a
client that connects to https://127.0.0.1 verifies it only when told to expect that name.
"""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from collector.config.load import load_config
from collector.errors import ConfigError
from collector.host import Host
from collector.registry import Registry
from exporters.otlp_http import factory
from tests.support.otlp_fixtures import make_batches
from tests.support.otlp_run import create, fast_retry
from tests.support.otlp_servers import HttpProfilesServer, Recorder
from tests.support.otlp_tls import TlsFiles, make_tls

NAME = "collector.test"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"), names=f"DNS:{NAME}")


def server_context(tls: TlsFiles, client_ca: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    if client_ca is not None:  # mutual TLS: only clients with a certificate from this CA
        ctx.load_verify_locations(str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def send(ctx: ssl.SSLContext, tls_cfg: dict[str, object], n: int = 100) -> tuple[Recorder, Host]:
    async def main() -> tuple[Recorder, Host]:
        rec = Recorder()
        srv = HttpProfilesServer(rec, ssl=ctx)
        await srv.start()
        exp = create(
            factory,
            {
                "endpoint": f"https://127.0.0.1:{srv.port}",
                "tls": tls_cfg,
                "interval": "1h",
                "timeout": "2s",
                "retry_on_failure": fast_retry(max_elapsed_time="300ms"),
            },
        )
        host = Host()
        await exp.start(host)
        await exp.export(make_batches(n)[0])
        await exp.shutdown()
        await srv.stop()
        return rec, host

    return asyncio.run(main())


def delivered(rec: Recorder, host: Host, n: int = 100) -> bool:
    return rec.samples == n and host.counters.get("otlp_http", "sent_samples") == n


def refused(rec: Recorder, host: Host, n: int = 100) -> bool:
    gave_up = host.counters.get("otlp_http", "failed_samples_retries_exhausted")
    return not rec.requests and gave_up == n


def test_server_name_override_is_what_gets_verified(tls: TlsFiles) -> None:
    ctx = server_context(tls)
    rec, host = send(ctx, {"ca_file": str(tls.ca), "server_name_override": NAME})
    assert delivered(rec, host)
    # The same CA without the override checks the name 127.0.0.1, which the cert lacks.
    rec, host = send(ctx, {"ca_file": str(tls.ca)})
    assert refused(rec, host)
    rec, host = send(ctx, {"ca_file": str(tls.ca), "server_name_override": "other.test"})
    assert refused(rec, host)


def test_ca_file_is_needed_to_trust_the_server(tls: TlsFiles) -> None:
    rec, host = send(server_context(tls), {"server_name_override": NAME})
    assert refused(rec, host)  # the system roots do not know the test CA


def test_insecure_skip_verify_connects_without_ca(tls: TlsFiles) -> None:
    rec, host = send(server_context(tls), {"insecure_skip_verify": True})
    assert delivered(rec, host)


def test_client_certificate_is_sent(tls: TlsFiles) -> None:
    # The server wants a client certificate from the test CA; the server's own pair is one.
    ctx = server_context(tls, client_ca=tls.ca)
    base = {"ca_file": str(tls.ca), "server_name_override": NAME}
    rec, host = send(ctx, {**base, "cert_file": str(tls.cert), "key_file": str(tls.key)})
    assert delivered(rec, host)
    rec, host = send(ctx, base)
    assert refused(rec, host)


def config_error(tmp_path: Path, exporter_yaml: str) -> str:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "receivers:\n  otlp: {}\nexporters:\n  otlp_http:\n"
        + "".join(f"    {line}\n" for line in exporter_yaml.strip().splitlines())
        + "service:\n  pipelines:\n    profiles:\n"
        "      receivers: [otlp]\n      exporters: [otlp_http]\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config([str(cfg)], Registry())
    msg = str(err.value)
    assert "\n" not in msg and "exporters.otlp_http" in msg, msg
    return msg


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("ca_file: {ca}", "tls.ca_file need an https:// endpoint"),
        ("server_name_override: collector.test", "tls.server_name_override need an https://"),
        ("insecure_skip_verify: true", "tls.insecure_skip_verify need an https://"),
        (
            "cert_file: {cert}\n  key_file: {key}",
            "tls.cert_file, tls.key_file need an https:// endpoint",
        ),
    ],
)
def test_tls_settings_on_plain_http_are_refused(
    tmp_path: Path, tls: TlsFiles, setting: str, needle: str
) -> None:
    setting = setting.format(ca=tls.ca, cert=tls.cert, key=tls.key)
    msg = config_error(tmp_path, f"endpoint: http://127.0.0.1:4318\ntls:\n  {setting}")
    assert needle in msg, msg


def test_insecure_with_https_is_refused(tmp_path: Path) -> None:
    msg = config_error(tmp_path, "endpoint: https://127.0.0.1:4318\ntls:\n  insecure: true")
    assert "tls.insecure: true asks for plain text but the endpoint is https://" in msg


def test_insecure_with_tls_files_is_refused(tmp_path: Path, tls: TlsFiles) -> None:
    # Without a scheme, insecure picks http://; the CA would silently go unused.
    msg = config_error(
        tmp_path, f"endpoint: 127.0.0.1:4318\ntls:\n  insecure: true\n  ca_file: {tls.ca}"
    )
    assert "tls.insecure: true is plain text, so tls.ca_file would be ignored" in msg


def test_skip_verify_with_ca_is_refused(tmp_path: Path, tls: TlsFiles) -> None:
    msg = config_error(
        tmp_path,
        "endpoint: https://127.0.0.1:4318\ntls:\n  insecure_skip_verify: true\n"
        f"  ca_file: {tls.ca}",
    )
    assert "tls.insecure_skip_verify checks no certificate" in msg


def test_endpoint_must_be_an_http_url(tmp_path: Path) -> None:
    msg = config_error(tmp_path, "endpoint: ftp://127.0.0.1:4318")
    assert "not an http:// or https:// URL" in msg


def test_scheme_less_endpoint_defaults_to_https() -> None:
    cfg = factory.config_model.model_validate({"endpoint": "otel.example:4318"})
    assert cfg.url() == "https://otel.example:4318/v1development/profiles" and cfg.uses_tls()
    cfg = factory.config_model.model_validate(
        {"endpoint": "otel.example:4318", "tls": {"insecure": True}}
    )
    assert cfg.url().startswith("http://") and not cfg.uses_tls()
