"""One HTTP server for the collector's own telemetry: ``/metrics`` (Prometheus text format,
from prometheus-client's registry and exposition), ``/healthz`` (alive, no fatal error) and
``/readyz`` (every component started, not stopping), for Kubernetes probes.

It runs on the collector's event loop (collector.selfmetrics.http: a small responder on
asyncio streams; aiohttp cost ~10 MB of resident memory for these three paths) and starts
before the pipelines, so probes answer while BPF programs load; the exposition is built in a
worker thread so a scrape never holds the loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.process_collector import ProcessCollector

from collector.config.schema import MetricsConfig
from collector.errors import ConfigError
from collector.host import Host
from collector.selfmetrics.families import CollectorMetrics
from collector.selfmetrics.http import HttpResponder, Reply

log = logging.getLogger("collector.selfmetrics")


@dataclass
class Readiness:
    """What /readyz reports; the CLI moves it through starting -> running -> stopping."""

    state: str = "starting"

    @property
    def ready(self) -> bool:
        return self.state in ("running", "reloading")


class TelemetryServer:
    def __init__(self, config: MetricsConfig, host: Host, readiness: Readiness) -> None:
        self.config = config
        self.host = host
        self.readiness = readiness
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(CollectorMetrics(host.counters, host.pressure, readiness))
        # The standard process_* families too (cpu, rss, open fds, start time).
        ProcessCollector(registry=self.registry)
        self._http: HttpResponder | None = None
        self.port = 0

    async def start(self) -> None:
        """Listen on the configured address; a no-op when it is "" (off).

        An address in use fails start-up with one line when the user chose it; the default
        one (not in the config) only warns: a second collector on the host keeps running
        without metrics rather than not at all."""
        if not self.config.address:
            return
        host, port = self.config.host_port()
        routes = {"/metrics": self._metrics, "/healthz": self._healthz, "/readyz": self._readyz}
        http = HttpResponder(routes, lambda name: self.host.counters.add("telemetry", name))
        try:
            await http.start(host, port)
        except OSError as e:
            where = f"service.telemetry.metrics.address {self.config.address}"
            if "address" in self.config.model_fields_set:
                raise ConfigError(f"{where}: cannot listen: {e.strerror or e}") from None
            log.warning(
                "metrics endpoint off: cannot listen on the default %s: %s (set "
                "service.telemetry.metrics.address to another port, or 'none')",
                self.config.address,
                e.strerror or e,
            )
            return
        self._http = http
        self.port = http.port
        log.info(
            "telemetry listening address=%s:%d paths=/metrics,/healthz,/readyz", host, self.port
        )

    async def _metrics(self) -> Reply:
        body = await asyncio.to_thread(generate_latest, self.registry)
        return Reply(200, body, CONTENT_TYPE_LATEST)

    async def _healthz(self) -> Reply:
        fatal = self.host.fatal_error
        if fatal:
            return Reply(503, f"fatal: {fatal}\n".encode())
        return Reply(200, b"ok\n")

    async def _readyz(self) -> Reply:
        status = 200 if self.readiness.ready and not self.host.fatal_error else 503
        return Reply(status, f"{self.readiness.state}\n".encode())

    async def stop(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.stop()
