"""One HTTP server for the collector's own telemetry: ``/metrics`` (Prometheus text format,
from prometheus-client's registry and exposition), ``/healthz`` (alive, no fatal error) and
``/readyz`` (every component started, not stopping), for Kubernetes probes.

It runs on the collector's event loop (aiohttp, already a dependency) and starts before the
pipelines, so probes answer while BPF programs load; the exposition is built in a worker
thread so a scrape never holds the loop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.process_collector import ProcessCollector

from collector.config.schema import MetricsConfig
from collector.errors import ConfigError
from collector.host import Host
from collector.selfmetrics.families import CollectorMetrics

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
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        """Listen on the configured address; a no-op when it is "" (off).

        An address in use fails start-up with one line when the user chose it; the default
        one (not in the config) only warns: a second collector on the host keeps running
        without metrics rather than not at all."""
        if not self.config.address:
            return
        host, port = self.config.host_port()
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as e:
            await runner.cleanup()
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
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info(
            "telemetry listening address=%s:%d paths=/metrics,/healthz,/readyz", host, self.port
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        fatal = self.host.fatal_error
        if fatal:
            return web.Response(status=503, text=f"fatal: {fatal}\n")
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.readiness.ready and not self.host.fatal_error:
            return web.Response(text=f"{self.readiness.state}\n")
        return web.Response(status=503, text=f"{self.readiness.state}\n")

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
