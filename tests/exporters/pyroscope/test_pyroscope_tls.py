"""HTTPS to the Pyroscope stand-in with a CA made by openssl: the shared TLS settings work
here as in otlp_http (verified name, CA needed, skip-verify, client certificate)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from tests.exporters.pyroscope.test_pyroscope_exporter import counter, run
from tests.support import encoding_samples as es
from tests.support.otlp_tls import TlsFiles, make_tls
from tests.support.pyroscope_server import PyroscopeServer


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    # A certificate for a name the test connects under only with server_name_override.
    return make_tls(tmp_path_factory.mktemp("tls"), names="DNS:pyroscope.test")


def context(tls: TlsFiles, client_ca: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls.cert), str(tls.key))
    if client_ca is not None:
        ctx.load_verify_locations(str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def test_verified_with_the_ca_and_the_certificate_name(tls: TlsFiles) -> None:
    cfg = {"ca_file": str(tls.ca), "server_name_override": "pyroscope.test"}
    with PyroscopeServer(ssl=context(tls)) as srv:
        host = run(srv, [es.profile_set()], tls=cfg)
    assert len(srv.received()) == 2 and counter(host, "sent_samples") == 15


@pytest.mark.parametrize(
    "cfg",
    [
        {},  # the system roots do not know the test CA
        {"ca_file": "CA"},  # trusted, but the certificate is not for 127.0.0.1
        {"ca_file": "CA", "server_name_override": "other.test"},
    ],
)
def test_refused_without_a_verified_certificate(tls: TlsFiles, cfg: dict) -> None:
    cfg = {k: (str(tls.ca) if v == "CA" else v) for k, v in cfg.items()}
    retry = {"initial_interval": "10ms", "max_interval": "10ms", "max_elapsed_time": "100ms"}
    with PyroscopeServer(ssl=context(tls)) as srv:
        host = run(srv, [es.profile_set()], tls=cfg, retry_on_failure=retry)
    assert srv.received() == [] and counter(host, "sent_samples") == 0
    assert counter(host, "failed_samples_retries_exhausted") == 15


def test_skip_verify_and_a_client_certificate(tls: TlsFiles) -> None:
    cfg = {"insecure_skip_verify": True, "cert_file": str(tls.cert), "key_file": str(tls.key)}
    with PyroscopeServer(ssl=context(tls, client_ca=tls.ca)) as srv:
        run(srv, [es.profile_set()], tls=cfg)
    assert len(srv.received()) == 2
