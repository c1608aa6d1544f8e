"""Backend outages between two real collector processes, and kill -9 with a persistent queue.

agent: otlp receiver -> memory_limiter -> otlp exporter (sending queue) -> gateway: otlp
receiver -> folded. The test process is the agent's source: it sends OTLP requests at a
steady rate and counts exactly what the agent accepted, so every sample is accounted for.

Why 30 s of a 60 s run and not the issue's 2 of 4 minutes: what decides the outcome is how
many requests pile up against the queue's capacity and the retry budget, not the clock. With
one request per 1 s window, 30 s queue 30 requests: the persistent queue (capacity 100)
keeps all of them and the in-memory one (capacity 5) overflows by ~25, the same code paths
a 2-minute outage takes, at a quarter of CI's time. Retries are unbounded
(``max_elapsed_time: 0``) so only the queue decides.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)

from collector.otlp import encode_profile_set
from collector.sending.storage import decode
from tests.processors.memory_limiter.test_memory_limiter import RssWatch
from tests.support.collector_run import CollectorProcess, start_collector
from tests.support.otlp_fixtures import build, make_batches
from tests.support.otlp_servers import free_port

pytestmark = pytest.mark.slow

PROFILES = "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"
PER_REQUEST = 50
EVERY_S = 0.1
LIMIT_MIB = 128  # soft 98: the agent peaks at ~70 MiB here (measured), so a leak shows

GATEWAY = """
receivers:
  otlp:
    grpc:
      endpoint: 127.0.0.1:%(gw)d
    http: null
exporters:
  folded:
    directory: %(out)s
    interval: 1s
service:
  telemetry:
    metrics:
      address: none
  pipelines:
    profiles:
      receivers: [otlp]
      exporters: [folded]
"""

AGENT = """
receivers:
  otlp:
    grpc:
      endpoint: 127.0.0.1:%(agent)d
    http: null
processors:
  memory_limiter:
    limit_mib: %(limit)d
    spike_limit_mib: 30
    check_interval: 200ms
exporters:
  otlp:
    endpoint: 127.0.0.1:%(gw)d
    tls:
      insecure: true
    interval: 1s
    timeout: 2s
    shutdown_timeout: 2s
    sending_queue:
      queue_size: %(queue)d
%(storage)s
    retry_on_failure:
      initial_interval: 200ms
      max_interval: 1s
      max_elapsed_time: 0
service:
  telemetry:
    metrics:
      address: 127.0.0.1:%(metrics)d
  pipelines:
    profiles:
      receivers: [otlp]
      processors: [memory_limiter]
      exporters: [otlp]
"""


class Sender:
    """Sends PER_REQUEST samples every EVERY_S to the agent; each sample has a timestamp of
    its own, so duplicates and losses can be named. Only OK answers count as accepted."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.accepted: list[int] = []  # timestamps, in the order sent
        self.refused = 0
        self._next = 1_700_000_000_000_000_000
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _request(self) -> tuple[bytes, list[int]]:
        batches = make_batches(PER_REQUEST, seed=len(self.accepted))
        times = []
        for s in batches[0].samples:
            self._next += 1000
            s.time_ns = self._next
            times.append(self._next)
        return encode_profile_set(build(batches)).SerializeToString(), times

    def _run(self) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as ch:
            call = ch.unary_unary(PROFILES)
            deadline = time.monotonic()
            while not self._stop.is_set():
                body, times = self._request()
                try:
                    call(body, timeout=10)
                    self.accepted.extend(times)
                except grpc.RpcError:
                    self.refused += 1  # the agent is gone (kill -9) or under pressure
                deadline += EVERY_S
                self._stop.wait(max(deadline - time.monotonic(), 0))

    def start(self) -> Sender:
        self._t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def total(logs: str, component: str, counter: str) -> int:
    """A counter's value from the ``totals`` lines a collector logs at shutdown."""
    found = 0
    for line in logs.splitlines():
        if f"totals component={component} " in line:
            m = re.search(rf"\b{counter}=(\d+)", line)
            found += int(m.group(1)) if m else 0
    return found


def _config(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def _agent_idle(agent: CollectorProcess, ports: dict[str, object], want: int) -> None:
    """Until the agent's exporter has sent ``want`` samples and its queue is empty."""
    from tests.collector.telemetry.test_selfmetrics import scrape, value

    def done() -> bool:
        m = scrape(int(ports["metrics"]))  # type: ignore[call-overload]
        sent = value(m, "otelcol_exporter_sent_samples_total", exporter="otlp")
        return sent == want and value(m, "otelcol_exporter_queue_size", exporter="otlp") == 0

    agent.wait_for(done, f"the agent to deliver {want} samples", timeout=120)


@pytest.mark.timeout(400)
@pytest.mark.parametrize(
    ("persistent", "up_s", "down_s"),
    [(True, 15.0, 30.0), (False, 5.0, 12.0)],
    ids=["persistent-queue", "memory-queue"],
)
def test_gateway_outage(tmp_path: Path, persistent: bool, up_s: float, down_s: float) -> None:
    ports = {"gw": free_port(), "agent": free_port(), "metrics": free_port()}
    storage = f"      storage:\n        directory: {tmp_path / 'queue'}" if persistent else ""
    agent_cfg = _config(
        tmp_path,
        "agent.yaml",
        AGENT
        % {**ports, "limit": LIMIT_MIB, "queue": 100 if persistent else 5, "storage": storage},
    )
    gw_cfg = _config(tmp_path, "gw.yaml", GATEWAY % {**ports, "out": tmp_path / "out"})
    gateways = [start_collector(gw_cfg)]
    agent = start_collector(agent_cfg)
    watch = RssWatch(agent.proc.pid)
    sender = Sender(ports["agent"]).start()
    try:
        time.sleep(up_s)
        assert gateways[0].stop() == 0  # the outage starts
        time.sleep(down_s)
        gateways.append(start_collector(gw_cfg))  # the gateway is back, same port
        time.sleep(up_s)
        sender.stop()
        accepted = len(sender.accepted)
        if persistent:
            _agent_idle(agent, ports, accepted)
        else:
            time.sleep(8)  # the in-memory queue's survivors go out (checked exactly below)
    finally:
        sender.stop()
        peak = watch.stop()
        rc_agent = agent.stop()
        rcs = [g.stop() for g in gateways]
    a_logs = agent.logs()
    g_logs = "".join(g.logs() for g in gateways)
    assert rc_agent == 0 and rcs == [0, 0], a_logs[-3000:]
    received = total(g_logs, "receivers/otlp", "received_samples")
    assert total(a_logs, "receivers/otlp", "accepted_samples") == accepted
    assert peak < LIMIT_MIB, peak  # the agent's RSS stayed under its limit throughout
    exp = "exporters/otlp"
    lost = sum(
        total(a_logs, exp, c)
        for c in (
            "dropped_samples_queue_full",
            "failed_samples_retries_exhausted",
            "failed_samples_permanent",
            "dropped_samples_shutdown",
        )
    ) + total(a_logs, "pipelines/profiles", "samples_dropped")
    refused = total(a_logs, "processors/memory_limiter", "refused_samples")
    summary = f"accepted={accepted} received={received} lost={lost} refused={refused}"
    assert refused == 0, summary
    if persistent:
        assert lost == 0 and received == accepted, summary  # zero samples lost
        assert total(a_logs, exp, "sent_samples") == accepted
    else:
        assert lost > 0, summary  # the outage overflowed the 5-request queue...
        assert received + lost == accepted, summary  # ...and every lost sample was counted
        assert total(a_logs, exp, "dropped_samples_queue_full") == lost, summary
    print(f"outage persistent={persistent}: {summary} agent_peak_rss_mib={peak:.1f}")


def _timestamps(blobs: list[bytes]) -> list[int]:
    out: list[int] = []
    for b in blobs:
        req = ExportProfilesServiceRequest.FromString(b)
        for rp in req.resource_profiles:
            for sp in rp.scope_profiles:
                for p in sp.profiles:
                    for s in p.samples:
                        out.extend(s.timestamps_unix_nano)
    return out


@pytest.mark.timeout(300)
def test_kill_9_then_restart_delivers_the_persistent_queue(tmp_path: Path) -> None:
    """kill -9 while requests flow to a gateway that is slow to come back: what was on disk
    is delivered after the restart; a sample is duplicated only if its request was in
    flight at the kill (at-least-once), and the only samples lost are the newest, still in
    the agent's 1 s window, never yet in the queue."""
    ports = {"gw": free_port(), "agent": free_port(), "metrics": free_port()}
    qdir = tmp_path / "queue"
    storage = f"      storage:\n        directory: {qdir}"
    agent_cfg = _config(
        tmp_path,
        "agent.yaml",
        AGENT % {**ports, "limit": LIMIT_MIB, "queue": 100, "storage": storage},
    )
    gw_cfg = _config(tmp_path, "gw.yaml", GATEWAY % {**ports, "out": tmp_path / "out"})
    gw = start_collector(gw_cfg)
    agent = start_collector(agent_cfg)
    sender = Sender(ports["agent"]).start()
    try:
        time.sleep(4)
        assert gw.stop() == 0  # deliveries stop; the queue fills on disk
        time.sleep(4)
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait()
        sender.stop()
    finally:
        sender.stop()
        if agent.proc.poll() is None:
            agent.proc.kill()
    before = total(gw.logs(), "receivers/otlp", "received_samples")
    files = sorted((qdir / "otlp").glob("*.req"))
    on_disk = _timestamps([decode(f.read_bytes())[2] for f in files])
    assert files and on_disk, "nothing was queued on disk before the kill"

    gw2 = start_collector(gw_cfg)
    agent2 = start_collector(agent_cfg)
    try:
        _agent_idle(agent2, ports, len(on_disk))
    finally:
        assert agent2.stop() == 0
        assert gw2.stop() == 0
    logs2 = agent2.logs()
    assert total(logs2, "exporters/otlp", "restored_samples") == len(on_disk), logs2[-2000:]
    after = total(gw2.logs(), "receivers/otlp", "received_samples")
    assert after == len(on_disk)  # every stored request delivered once after the restart
    assert not list((qdir / "otlp").glob("*.req"))  # and removed
    accepted = sender.accepted
    # Windows are cut by time and sent in order, so what reached the gateway before the kill
    # is the oldest samples, what was on disk comes next, and the newest were lost with the
    # agent's open window. A request the gateway took whose answer was lost is on disk too:
    # that is the duplicate at-least-once allows (at most one request: one consumer).
    delivered_first = set(accepted[:before])
    disk = set(on_disk)
    assert len(disk) == len(on_disk), "a sample stored twice"
    dup = len(disk & delivered_first)
    assert dup <= PER_REQUEST / EVERY_S * 2, dup  # at most one in-flight window request
    fresh = disk - delivered_first
    assert fresh == set(accepted[before : before + len(fresh)]), "the queue lost or reordered"
    lost = accepted[before + len(fresh) :]
    # Only what the agent still held in its 1 s window (and the pipeline) at the kill.
    assert len(lost) <= 3 * PER_REQUEST / EVERY_S, len(lost)
    print(
        f"kill -9: accepted={len(accepted)} delivered_before={before} on_disk={len(on_disk)} "
        f"delivered_after={after} duplicates={dup} lost_in_open_window={len(lost)}"
    )
