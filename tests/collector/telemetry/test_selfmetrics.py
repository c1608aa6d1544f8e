"""Self-metrics, /healthz and /readyz: scraped over HTTP and parsed with prometheus-client's
own text parser, from a real collector CLI that receives OTLP and sends it on to a real gRPC
server on loopback, which then goes away."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.config.schema import MetricsConfig
from collector.errors import ConfigError
from collector.host import Host
from collector.otlp import encode_profile_set
from collector.selfmetrics import Readiness, TelemetryServer
from tests.support.collector_run import CollectorProcess, start_collector
from tests.support.otlp_fixtures import build, make_batches
from tests.support.otlp_servers import GrpcProfilesServer, Recorder, free_port

PROFILES = "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample as (name, sorted labels) -> value, via prometheus-client's parser."""
    status, text = get(port, "/metrics")
    assert status == 200, text
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: Samples, name: str, **labels: str) -> float | None:
    return m.get((name, tuple(sorted(labels.items()))))


def test_families_from_counters_in_process() -> None:
    async def main() -> None:
        host = Host()
        c = host.counters
        c.add("receivers/cpu", "accepted_samples", 7)
        c.add("receivers/cpu", "lost_samples", 2)
        c.add("exporters/otlp", "sent_samples", 5)
        c.add("exporters/otlp", "failed_samples_retries_exhausted", 1)
        c.add("exporters/pprof", "samples_written", 3)
        c.gauge("exporters/otlp", "queue_size", lambda: 4)
        c.gauge("exporters/otlp", "queue_capacity", lambda: 100)
        ready = Readiness()
        srv = TelemetryServer(MetricsConfig(address="127.0.0.1:0"), host, ready)
        await srv.start()
        try:
            m = await asyncio.to_thread(scrape, srv.port)
            assert value(m, "otelcol_receiver_accepted_samples_total", receiver="cpu") == 7
            assert value(m, "otelcol_exporter_sent_samples_total", exporter="otlp") == 5
            assert value(m, "otelcol_exporter_sent_samples_total", exporter="pprof") == 3
            assert value(m, "otelcol_exporter_send_failed_samples_total", exporter="otlp") == 1
            assert value(m, "otelcol_exporter_queue_size", exporter="otlp") == 4
            assert value(m, "otelcol_exporter_queue_capacity", exporter="otlp") == 100
            # Every counter generically, so every logged one is there too.
            generic = "collector_component_lost_samples_total"
            assert value(m, generic, component="receivers/cpu") == 2
            assert value(m, "collector_component_queue_size", component="exporters/otlp") == 4
            assert value(m, "otelcol_process_memory_rss") > 10 << 20
            assert value(m, "process_resident_memory_bytes") > 10 << 20
            assert value(m, "otelcol_process_cpu_seconds_total") > 0
            assert value(m, "collector_ready") == 0
            code, _ = await asyncio.to_thread(get, srv.port, "/readyz")
            assert code == 503  # still starting
            ready.state = "running"
            assert (await asyncio.to_thread(get, srv.port, "/readyz"))[0] == 200
            assert (await asyncio.to_thread(get, srv.port, "/healthz"))[0] == 200
            host.report_fatal("receivers/cpu", "reader thread died")
            code, body = await asyncio.to_thread(get, srv.port, "/healthz")
            assert code == 503 and "reader thread died" in body
            assert (await asyncio.to_thread(get, srv.port, "/readyz"))[0] == 503
        finally:
            await srv.stop()

    asyncio.run(main())


def test_address_in_use_explicit_fails_default_warns(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            taken = MetricsConfig(address=f"127.0.0.1:{port}")
            with pytest.raises(ConfigError, match="cannot listen"):
                await TelemetryServer(taken, Host(), Readiness()).start()
            default = MetricsConfig.model_construct(set(), address=f"127.0.0.1:{port}")  # unset
            srv = TelemetryServer(default, Host(), Readiness())
            with caplog.at_level(logging.WARNING):
                await srv.start()
            assert srv.port == 0 and "metrics endpoint off" in caplog.text
        for off in ("", "none", "NONE"):
            srv = TelemetryServer(MetricsConfig(address=off), Host(), Readiness())
            await srv.start()
            assert srv.port == 0
        with pytest.raises(ValueError, match="not host:port"):
            MetricsConfig(address="8888")

    asyncio.run(main())


CONFIG = """
receivers:
  otlp:
    grpc:
      endpoint: 127.0.0.1:%(grpc)d
    http: null
exporters:
  otlp:
    endpoint: 127.0.0.1:%(backend)d
    tls:
      insecure: true
    interval: 200ms
    timeout: 1s
    retry_on_failure:
      initial_interval: 50ms
      max_interval: 100ms
      max_elapsed_time: 1s
service:
  telemetry:
    metrics:
      address: 127.0.0.1:%(metrics)d
  pipelines:
    profiles:
      receivers: [otlp]
      exporters: [otlp]
"""


def _send(port: int, n: int) -> None:
    body = encode_profile_set(build(make_batches(n))).SerializeToString()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        ch.unary_unary(PROFILES)(body, timeout=10)


def _wait(col: CollectorProcess, port: int, what: str, ok: object) -> Samples:
    holder: list[Samples] = []

    def cond() -> bool:
        holder[:] = [scrape(port)]
        return bool(ok(holder[0]))  # type: ignore[operator]

    col.wait_for(cond, what, timeout=60)
    return holder[0]


def test_metrics_move_with_a_real_collector(tmp_path: Path) -> None:
    ports = {"grpc": free_port(), "backend": free_port(), "metrics": free_port()}
    (tmp_path / "c.yaml").write_text(CONFIG % ports)
    rec = Recorder()
    loop = asyncio.new_event_loop()  # the backend serves from its own thread
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def on_loop(coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, loop).result(30)  # type: ignore[arg-type]

    srv = GrpcProfilesServer(rec, port=ports["backend"])
    on_loop(srv.start())
    col = start_collector(tmp_path / "c.yaml")
    try:
        mp = ports["metrics"]
        assert get(mp, "/healthz") == (200, "ok\n") and get(mp, "/readyz")[0] == 200
        before = scrape(mp)
        assert value(before, "otelcol_exporter_queue_capacity", exporter="otlp") == 100
        assert value(before, "otelcol_exporter_sent_samples_total", exporter="otlp") == 0
        _send(ports["grpc"], 300)

        m = _wait(
            col,
            mp,
            "300 samples sent",
            lambda m: value(m, "otelcol_exporter_sent_samples_total", exporter="otlp") == 300,
        )
        assert value(m, "otelcol_receiver_accepted_samples_total", receiver="otlp") == 300
        assert value(m, "otelcol_receiver_refused_samples_total", receiver="otlp") == 0
        assert (
            value(m, "collector_component_received_samples_total", component="receivers/otlp")
            == 300
        )
        assert (
            value(m, "collector_component_windows_closed_total", component="pipelines/profiles")
            >= 1
        )
        assert rec.samples == 300
        # The backend goes away: the next window fails after its 1 s retry budget.
        on_loop(srv.stop())
        _send(ports["grpc"], 100)
        m = _wait(
            col,
            mp,
            "100 samples failed",
            lambda m: (
                value(m, "otelcol_exporter_send_failed_samples_total", exporter="otlp") == 100
            ),
        )
        assert value(m, "otelcol_receiver_accepted_samples_total", receiver="otlp") == 400
        assert value(m, "otelcol_exporter_sent_samples_total", exporter="otlp") == 300
        cpu0 = value(m, "otelcol_process_cpu_seconds_total")
        time.sleep(0.2)
        assert value(scrape(mp), "otelcol_process_cpu_seconds_total") >= cpu0
    finally:
        rc = col.stop()
        loop.call_soon_threadsafe(loop.stop)
    assert rc == 0, col.logs()
    assert "telemetry listening" in col.logs()


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_malformed_and_hostile_requests_get_an_answer_and_a_counter() -> None:
    async def main() -> None:
        host = Host()
        srv = TelemetryServer(MetricsConfig(address="127.0.0.1:0"), host, Readiness())
        await srv.start()
        try:
            # A client that connects and says nothing does not hold the server up.
            with socket.create_connection(("127.0.0.1", srv.port)):
                assert (await asyncio.to_thread(get, srv.port, "/healthz"))[0] == 200
            answers = {
                b"garbage\r\n\r\n": b"HTTP/1.1 400 ",
                b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n": b"HTTP/1.1 405 ",
                b"GET /nothing HTTP/1.1\r\n\r\n": b"HTTP/1.1 404 ",
                b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n": b"HTTP/1.1 431 ",
                b"GET /healthz?probe=1 HTTP/1.0\r\n\r\n": b"HTTP/1.1 200 ",
            }
            for request, status in answers.items():
                reply = await asyncio.to_thread(_raw, srv.port, request)
                assert reply.startswith(status), (request[:40], reply[:80])
            head = await asyncio.to_thread(_raw, srv.port, b"HEAD /metrics HTTP/1.1\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
            assert b"Content-Length: " in head and b"Content-Type: text/plain; version=" in head
            c = host.counters
            assert c.get("telemetry", "http_bad_request") == 1
            assert c.get("telemetry", "http_bad_method") == 1
            assert c.get("telemetry", "http_head_too_large") == 1
            assert (await asyncio.to_thread(get, srv.port, "/metrics"))[0] == 200  # still up
        finally:
            await srv.stop()

    asyncio.run(main())
