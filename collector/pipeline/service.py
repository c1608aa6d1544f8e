"""Builds the component graph from a validated config and runs it.

Receivers are shared by every pipeline that lists them (fan-out); processors are built per
pipeline; exporters are shared (fan-in). After its processors, a pipeline hands each batch
to the exporters that take batches, and to one WindowStage per distinct window setting of
its "profiles" exporters: each window's ProfileSet is built once and the same object is
offered to every exporter of that setting.

Start: exporters, then per pipeline its processors and windows, then receivers. Shutdown:
receivers stop -> pipeline queues drain -> processors stop -> windows close and hand their
last ProfileSets on -> exporter queues drain -> exporters stop -> shared services released.
Whatever the shutdown deadline cuts off is counted (samples_dropped_at_shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from collector.component import Component, CreateSettings
from collector.config.load import LoadedConfig
from collector.errors import CollectorError, RuntimeFailure
from collector.host import Host, ScopedHost
from collector.model import WindowSettings
from collector.pipeline.queues import BoundedQueue, FanOut, batch_len
from collector.pipeline.windowing import Sink, WindowStage

log = logging.getLogger("collector.service")


@dataclass
class _Pipeline:
    name: str
    queue: BoundedQueue
    processors: list[tuple[str, Any]] = field(default_factory=list)
    # Exporters that take the pipeline's batches as they are (e.g. a plugin's "symbolized").
    exporter_queues: list[BoundedQueue] = field(default_factory=list)
    windows: list[WindowStage] = field(default_factory=list)


def _offer_to(queues: list[BoundedQueue]) -> Sink:
    async def offer(ps: Any) -> None:
        for q in queues:
            q.offer(ps)

    return offer


class Service:
    def __init__(self, cfg: LoadedConfig, host: Host | None = None) -> None:
        self.cfg = cfg
        self.host = host or Host()
        self._receivers: dict[str, Component] = {}
        self._exporters: dict[str, Any] = {}
        self._exporter_queues: dict[str, BoundedQueue] = {}
        self._pipelines: list[_Pipeline] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started: list[tuple[str, Component]] = []
        self._stop = asyncio.Event()

    def _settings(self, kind: str, cid: str, consumer: Any = None) -> CreateSettings:
        return CreateSettings(cid, logging.getLogger(f"collector.{kind}s.{cid}"), consumer)

    def _build(self) -> None:
        svc = self.cfg.root.service
        counters = self.host.counters
        loop = asyncio.get_running_loop()
        for (kind, cid), spec in self.cfg.components.items():
            if kind == "exporter":
                self._exporters[cid] = spec.factory.create(self._settings(kind, cid), spec.config)
                self._exporter_queues[cid] = BoundedQueue(
                    f"exporters/{cid}", svc.queue_size, counters
                )
        feeds: dict[str, list[BoundedQueue]] = {}
        for name, pc in svc.pipelines.items():
            pipe = _Pipeline(name, BoundedQueue(f"pipelines/{name}", svc.queue_size, counters))
            for pid in pc.processors:
                spec = self.cfg.spec("processor", pid)
                proc = spec.factory.create(self._settings("processor", pid), spec.config)
                pipe.processors.append((pid, proc))
            by_window: dict[WindowSettings, list[BoundedQueue]] = {}
            for eid in pc.exporters:
                spec = self.cfg.spec("exporter", eid)
                if spec.factory.input == "profiles":
                    window = spec.factory.window
                    ws = window(spec.config) if window is not None else WindowSettings()
                    by_window.setdefault(ws, []).append(self._exporter_queues[eid])
                else:
                    pipe.exporter_queues.append(self._exporter_queues[eid])
            for ws, queues in by_window.items():
                owner = f"pipelines/{name}"
                pipe.windows.append(WindowStage(owner, ws, _offer_to(queues), counters))
            for rid in pc.receivers:
                feeds.setdefault(rid, []).append(pipe.queue)
            self._pipelines.append(pipe)
        for rid, queues in feeds.items():
            spec = self.cfg.spec("receiver", rid)
            settings = self._settings("receiver", rid, FanOut(loop, queues))
            self._receivers[rid] = spec.factory.create(settings, spec.config)

    async def _start_one(self, cid: str, comp: Component) -> None:
        scope = cid.split("/", 1)[0]  # "receivers", "processors" or "exporters"
        try:
            await comp.start(ScopedHost(self.host, scope))
        except CollectorError:
            raise
        except Exception as exc:
            raise RuntimeFailure(f"{cid}: failed to start: {type(exc).__name__}: {exc}") from exc
        self._started.append((cid, comp))

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.host.on_fatal(self._on_fatal)
        self._build()
        for cid, exp in self._exporters.items():
            await self._start_one(f"exporters/{cid}", exp)
            self._spawn(self._export_loop(cid, exp, self._exporter_queues[cid]))
        for pipe in self._pipelines:
            for pid, proc in pipe.processors:
                await self._start_one(f"processors/{pid}", proc)
            for stage in pipe.windows:
                stage.start()
            self._spawn(self._pipeline_loop(pipe))
        for rid, rec in self._receivers.items():
            await self._start_one(f"receivers/{rid}", rec)
        self._spawn(self._report_loop())
        log.info(
            "started pipelines=%d receivers=%d exporters=%d",
            len(self._pipelines),
            len(self._receivers),
            len(self._exporters),
        )

    def _spawn(self, coro: Any) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coro))

    def _on_fatal(self, component_id: str, message: str) -> None:
        log.error("fatal component=%s error=%s", component_id, message)
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            self._loop.call_soon_threadsafe(self._stop.set)

    async def run_until_stopped(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._stop.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()

    async def _pipeline_loop(self, pipe: _Pipeline) -> None:
        while True:
            batch = await pipe.queue.queue.get()
            try:
                await self._through(pipe, batch)
            except asyncio.CancelledError:
                # Shutdown's deadline passed with this batch still in a processor.
                n = batch_len(batch)
                self.host.counters.add(pipe.queue.owner, "samples_dropped_at_shutdown", n)
                raise
            finally:
                pipe.queue.queue.task_done()

    async def _through(self, pipe: _Pipeline, batch: Any) -> None:
        counters = self.host.counters
        for pid, proc in pipe.processors:
            n = batch_len(batch)
            try:
                batch = await proc.process(batch)
            except Exception:
                counters.add(f"processors/{pid}", "batches_failed")
                counters.add(pipe.queue.owner, "samples_dropped", n)
                log.exception("processor failed on a batch component=processors/%s", pid)
                return
            if batch is None:
                return
        for q in pipe.exporter_queues:
            q.offer(batch)
        for stage in pipe.windows:
            await self._window(pipe, stage, batch)

    async def _window(self, pipe: _Pipeline, stage: WindowStage, batch: Any) -> None:
        owner = pipe.queue.owner
        if stage.closed:  # a batch that outlived the shutdown deadline in a processor
            self.host.counters.add(owner, "samples_dropped_at_shutdown", batch_len(batch))
            return
        try:
            await stage.add(batch)
        except Exception:
            self.host.counters.add(owner, "batches_failed")
            self.host.counters.add(owner, "samples_dropped", batch_len(batch))
            log.exception("windowing failed on a batch component=%s", owner)

    async def _export_loop(self, cid: str, exp: Any, queue: BoundedQueue) -> None:
        failures = 0
        while True:
            batch = await queue.queue.get()
            try:
                await exp.export(batch)
            except asyncio.CancelledError:
                # Shutdown's deadline passed while this exporter still held the item.
                self.host.counters.add(queue.owner, "samples_dropped_at_shutdown", batch_len(batch))
                raise
            except Exception as exc:
                self.host.counters.add(f"exporters/{cid}", "batches_failed")
                failures += 1
                if failures == 1 or failures % 100 == 0:
                    log.error(
                        "export failed component=exporters/%s failures=%d error=%r",
                        cid,
                        failures,
                        exc,
                    )
            finally:
                queue.queue.task_done()

    async def _report_loop(self) -> None:
        interval = self.cfg.root.service.telemetry.report_interval
        while True:
            await asyncio.sleep(interval)
            self.report()

    def report(self, final: bool = False) -> None:
        data = self.host.counters.snapshot() if final else self.host.counters.deltas()
        what = "totals" if final else "counters"
        for comp, values in sorted(data.items()):
            kv = " ".join(f"{k}={v}" for k, v in sorted(values.items()))
            log.info("%s component=%s %s", what, comp, kv)

    async def _drain(self, queues: list[BoundedQueue], deadline: float) -> None:
        loop = asyncio.get_running_loop()
        for q in queues:
            remaining = deadline - loop.time()
            if remaining > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(q.queue.join(), remaining)
            q.discard_remaining()

    async def shutdown(self) -> None:
        """Stop receivers, drain queues, close windows, flush exporters. Idempotent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.root.service.shutdown_timeout
        started = list(reversed(self._started))
        self._started = []
        errors: list[str] = []

        async def stop(kind: str) -> None:
            for cid, comp in started:
                if cid.startswith(kind):
                    try:
                        await comp.shutdown()
                    except Exception as exc:
                        errors.append(f"{cid}: {exc}")
                        log.exception("shutdown failed component=%s", cid)

        await stop("receivers/")
        await asyncio.sleep(0.05)  # let batches handed over from reader threads arrive
        await self._drain([p.queue for p in self._pipelines], deadline)
        await stop("processors/")
        for pipe in self._pipelines:
            for stage in pipe.windows:
                try:
                    await stage.shutdown()
                except Exception as exc:
                    errors.append(f"{stage.owner}: {exc}")
                    log.exception("closing windows failed component=%s", stage.owner)
        await self._drain(list(self._exporter_queues.values()), deadline)
        await stop("exporters/")
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.host.close_shared()
        self.report(final=True)
        if errors:
            log.error("shutdown finished with errors count=%d", len(errors))
