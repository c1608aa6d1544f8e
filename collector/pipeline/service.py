"""Builds the component graph from a validated config and runs it; rebuilds what changed on
a reload.

Receivers are shared by every pipeline that lists them (fan-out); processors are built per
pipeline; exporters are shared (fan-in). After its processors, a pipeline hands each batch
to the exporters that take batches, and to one WindowStage per distinct window setting of
its "profiles" exporters: each window's ProfileSet is built once and the same object is
offered to every exporter of that setting.

A traces pipeline (no processors, no windows) publishes each SpanBatch to the host's SpanHub
(collector/spans), where correlate processors index it, and offers it to its exporters as is.
A processor that holds batches (correlate) returns None and hands them on later through the
``emit`` callback in its CreateSettings: they continue after it, serialized with the loop.

Start: exporters, then per pipeline its processors and windows, then receivers. Shutdown:
receivers stop -> pipeline queues drain -> processors stop -> windows close and hand their
last ProfileSets on -> exporter queues drain -> exporters stop -> shared services released.
Whatever the shutdown deadline cuts off is counted (samples_dropped_at_shutdown).
``reload`` (collector/pipeline/reload.py) keeps every component whose config did not change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from collector import logs, memory
from collector.component import Component, CreateSettings, Emit
from collector.config.load import LoadedConfig
from collector.config.schema import pipeline_signal
from collector.errors import CollectorError, RuntimeFailure
from collector.host import Host, ScopedHost
from collector.model import WindowSettings
from collector.pipeline.queues import BoundedQueue, FanOut, batch_len
from collector.pipeline.windowing import Sink, WindowStage
from collector.spans import HUB_KEY, SpanBatch, SpanHub

log = logging.getLogger("collector.service")


@dataclass
class _Pipeline:
    name: str
    queue: BoundedQueue
    processors: list[tuple[str, Any]] = field(default_factory=list)
    # Exporters that take the pipeline's batches as they are (e.g. a plugin's "symbolized").
    exporter_queues: list[BoundedQueue] = field(default_factory=list)
    windows: list[WindowStage] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    started: list[tuple[str, Any]] = field(default_factory=list)  # processors started
    signal: str = "profiles"  # or "traces"
    hub: SpanHub | None = None  # traces pipelines, while running
    # Serializes the loop's batches with those a processor emits later (same order rules).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Exporter:
    comp: Any
    queue: BoundedQueue
    task: asyncio.Task[None] | None = None
    started: bool = False


@dataclass
class _Receiver:
    comp: Any
    feed: FanOut
    started: bool = False


def _offer_to(queues: list[BoundedQueue]) -> Sink:
    async def offer(ps: Any) -> None:
        for q in queues:
            q.offer(ps)

    return offer


class Service:
    def __init__(self, cfg: LoadedConfig, host: Host | None = None) -> None:
        self.cfg = cfg
        self.host = host or Host()
        self._receivers: dict[str, _Receiver] = {}
        self._exporters: dict[str, _Exporter] = {}
        self._pipelines: dict[str, _Pipeline] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._shut = False
        self._queue_gauges: dict[int, dict[str, Any]] = {}

    # -- building ---------------------------------------------------------------------------
    def _settings(
        self, kind: str, cid: str, consumer: Any = None, emit: Emit | None = None
    ) -> CreateSettings:
        return CreateSettings(cid, logging.getLogger(f"collector.{kind}s.{cid}"), consumer, emit)

    def _emitter(self, pipe: _Pipeline, after: int) -> Emit:
        async def emit(batch: Any) -> None:
            async with pipe.lock:
                await self._through(pipe, batch, after)

        return emit

    def _queue(self, owner: str, size: int) -> BoundedQueue:
        return BoundedQueue(owner, size, self.host.counters)

    def _gauge_queue(self, q: BoundedQueue) -> None:
        # Registered at start, removed at retirement: on a reload the old part retires
        # before its replacement starts, so the gauges always read the running queue.
        self._queue_gauges[id(q)] = reads = {
            "input_queue_size": q.queue.qsize,
            "input_queue_capacity": lambda: q.queue.maxsize,
        }
        for name, read in reads.items():
            self.host.counters.gauge(q.owner, name, read)

    def _unqueue(self, q: BoundedQueue) -> None:
        for name, read in self._queue_gauges.pop(id(q), {}).items():
            self.host.counters.drop_gauge(q.owner, name, read)

    def build_exporter(self, cfg: LoadedConfig, cid: str) -> _Exporter:
        spec = cfg.spec("exporter", cid)
        comp = spec.factory.create(self._settings("exporter", cid), spec.config)
        return _Exporter(comp, self._queue(f"exporters/{cid}", cfg.root.service.queue_size))

    def build_pipeline(
        self, cfg: LoadedConfig, name: str, exporters: dict[str, _Exporter]
    ) -> _Pipeline:
        pc = cfg.root.service.pipelines[name]
        owner = f"pipelines/{name}"
        pipe = _Pipeline(name, self._queue(owner, cfg.root.service.queue_size))
        pipe.signal = pipeline_signal(name)
        for i, pid in enumerate(pc.processors):
            spec = cfg.spec("processor", pid)
            settings = self._settings("processor", pid, emit=self._emitter(pipe, i + 1))
            pipe.processors.append((pid, spec.factory.create(settings, spec.config)))
        by_window: dict[WindowSettings, list[BoundedQueue]] = {}
        for eid in pc.exporters:
            spec = cfg.spec("exporter", eid)
            if spec.factory.input == "profiles" and pipe.signal == "profiles":
                window = spec.factory.window
                ws = window(spec.config) if window is not None else WindowSettings()
                by_window.setdefault(ws, []).append(exporters[eid].queue)
            else:
                pipe.exporter_queues.append(exporters[eid].queue)
        for ws, queues in by_window.items():
            pipe.windows.append(WindowStage(owner, ws, _offer_to(queues), self.host.counters))
        return pipe

    @staticmethod
    def feeds(
        cfg: LoadedConfig, pipelines: dict[str, _Pipeline]
    ) -> dict[str, tuple[list[BoundedQueue], list[BoundedQueue]]]:
        """Receiver id -> (its profiles pipelines' queues, its traces pipelines' queues)."""
        out: dict[str, tuple[list[BoundedQueue], list[BoundedQueue]]] = {}
        for name, pc in cfg.root.service.pipelines.items():
            side = 1 if pipeline_signal(name) == "traces" else 0
            for rid in pc.receivers:
                out.setdefault(rid, ([], []))[side].append(pipelines[name].queue)
        return out

    def build_receiver(
        self, cfg: LoadedConfig, rid: str, queues: tuple[list[BoundedQueue], list[BoundedQueue]]
    ) -> _Receiver:
        spec = cfg.spec("receiver", rid)
        loop = asyncio.get_running_loop()
        feed = FanOut(loop, queues[0], self.host.counters, f"receivers/{rid}", queues[1])
        comp = spec.factory.create(self._settings("receiver", rid, feed), spec.config)
        return _Receiver(comp, feed)

    # -- starting ---------------------------------------------------------------------------
    async def _start_one(self, cid: str, comp: Component) -> None:
        scope = cid.split("/", 1)[0]  # "receivers", "processors" or "exporters"
        self.host.counters.declare(cid)
        try:
            await comp.start(ScopedHost(self.host, scope))
        except CollectorError:
            raise
        except Exception as exc:
            raise RuntimeFailure(f"{cid}: failed to start: {type(exc).__name__}: {exc}") from exc

    async def start_exporter(self, cid: str, e: _Exporter) -> None:
        await self._start_one(f"exporters/{cid}", e.comp)
        e.started = True
        self._gauge_queue(e.queue)
        e.task = self._spawn(self._export_loop(cid, e.comp, e.queue))

    async def start_processors(self, pipe: _Pipeline) -> None:
        for pid, proc in pipe.processors:
            await self._start_one(f"processors/{pid}", proc)
            pipe.started.append((pid, proc))

    def run_pipeline(self, pipe: _Pipeline) -> None:
        self._gauge_queue(pipe.queue)
        if pipe.signal == "traces" and pipe.hub is None:
            pipe.hub = self.host.shared(HUB_KEY, SpanHub)
        for stage in pipe.windows:
            stage.start()
        pipe.task = self._spawn(self._pipeline_loop(pipe))

    async def start_receiver(self, rid: str, r: _Receiver) -> None:
        await self._start_one(f"receivers/{rid}", r.comp)
        r.started = True

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.host.on_fatal(self._on_fatal)
        cfg = self.cfg
        for (kind, cid), _spec in cfg.components.items():
            if kind == "exporter":
                self._exporters[cid] = self.build_exporter(cfg, cid)
        for name in cfg.root.service.pipelines:
            self._pipelines[name] = self.build_pipeline(cfg, name, self._exporters)
        for rid, queues in self.feeds(cfg, self._pipelines).items():
            self._receivers[rid] = self.build_receiver(cfg, rid, queues)
        for cid, exp in self._exporters.items():
            await self.start_exporter(cid, exp)
        for pipe in self._pipelines.values():
            await self.start_processors(pipe)
            self.run_pipeline(pipe)
        for rid, rec in self._receivers.items():
            await self.start_receiver(rid, rec)
        self._spawn(self._report_loop())
        self._spawn(memory.trim_loop(self.host.counters))  # freed memory back to the kernel
        log.info(
            "started pipelines=%d receivers=%d exporters=%d",
            len(self._pipelines),
            len(self._receivers),
            len(self._exporters),
        )

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(lambda t: t in self._tasks and self._tasks.remove(t))
        return task

    def _on_fatal(self, component_id: str, message: str) -> None:
        log.error("fatal component=%s error=%s", component_id, message)
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            self._loop.call_soon_threadsafe(self._stop.set)

    async def run_until_stopped(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._stop.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()

    async def reload(self, new: LoadedConfig) -> dict[str, list[str]]:
        """Swap to ``new``, keeping every component whose settings did not change."""
        from collector.pipeline.reload import apply

        return await apply(self, new)

    # -- running ----------------------------------------------------------------------------
    async def _pipeline_loop(self, pipe: _Pipeline) -> None:
        while True:
            batch = await pipe.queue.queue.get()
            try:
                async with pipe.lock:
                    await self._through(pipe, batch)
            except asyncio.CancelledError:
                # Shutdown's deadline passed with this batch still in a processor.
                n = batch_len(batch)
                self.host.counters.add(pipe.queue.owner, "samples_dropped_at_shutdown", n)
                raise
            finally:
                pipe.queue.queue.task_done()

    async def _through(self, pipe: _Pipeline, batch: Any, first: int = 0) -> None:
        counters = self.host.counters
        if isinstance(batch, SpanBatch):
            self._spans(pipe, batch)
            return
        for pid, proc in pipe.processors[first:]:
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

    def _spans(self, pipe: _Pipeline, batch: SpanBatch) -> None:
        self.host.counters.add(pipe.queue.owner, "spans_received", batch.span_count)
        if pipe.hub is not None:
            try:
                pipe.hub.publish(batch)
            except Exception:  # a subscriber's bug must not stop forwarding
                self.host.counters.add(pipe.queue.owner, "span_batches_failed")
                log.exception("indexing spans failed component=%s", pipe.queue.owner)
        for q in pipe.exporter_queues:
            q.offer(batch)

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
        while True:
            await asyncio.sleep(self.cfg.root.service.telemetry.report_interval)
            self.report()
            logs.flush_suppressed()

    def report(self, final: bool = False) -> None:
        data = self.host.counters.snapshot() if final else self.host.counters.deltas()
        what = "totals" if final else "counters"
        for comp, values in sorted(data.items()):
            if not values:
                continue
            kv = " ".join(f"{k}={v}" for k, v in sorted(values.items()))
            log.info("%s component=%s %s", what, comp, kv)

    # -- stopping ---------------------------------------------------------------------------
    async def _drain(self, queues: list[BoundedQueue], deadline: float) -> None:
        loop = asyncio.get_running_loop()
        for q in queues:
            remaining = deadline - loop.time()
            if remaining > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(q.queue.join(), remaining)
            q.discard_remaining()

    async def _call_shutdown(self, cid: str, comp: Any, errors: list[str]) -> None:
        try:
            await comp.shutdown()
        except Exception as exc:
            errors.append(f"{cid}: {exc}")
            log.exception("shutdown failed component=%s", cid)

    async def stop_receivers(self, rids: list[str], errors: list[str]) -> None:
        for rid in reversed(rids):
            r = self._receivers[rid]
            if r.started:
                r.started = False
                await self._call_shutdown(f"receivers/{rid}", r.comp, errors)

    async def retire_pipelines(
        self, pipes: list[_Pipeline], deadline: float, errors: list[str]
    ) -> None:
        """Drain, stop processors, close windows (their last sets go to the exporters)."""
        await self._drain([p.queue for p in pipes], deadline)
        for pipe in pipes:
            for pid, proc in reversed(pipe.started):
                await self._call_shutdown(f"processors/{pid}", proc, errors)
            pipe.started = []
        for pipe in pipes:
            for stage in pipe.windows:
                try:
                    await stage.shutdown()
                except Exception as exc:
                    errors.append(f"{stage.owner}: {exc}")
                    log.exception("closing windows failed component=%s", stage.owner)
            await self._cancel(pipe.task)
            self._unqueue(pipe.queue)
            if pipe.hub is not None:
                pipe.hub = None
                self.host.release(HUB_KEY)

    async def retire_exporters(self, cids: list[str], deadline: float, errors: list[str]) -> None:
        await self._drain([self._exporters[c].queue for c in cids], deadline)
        for cid in reversed(cids):
            e = self._exporters[cid]
            if e.started:
                e.started = False
                await self._call_shutdown(f"exporters/{cid}", e.comp, errors)
            await self._cancel(e.task)
            self._unqueue(e.queue)

    async def _cancel(self, task: asyncio.Task[None] | None) -> None:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def shutdown(self) -> None:
        """Stop receivers, drain queues, close windows, flush exporters. Idempotent."""
        if self._shut:
            return
        self._shut = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.root.service.shutdown_timeout
        errors: list[str] = []
        await self.stop_receivers(list(self._receivers), errors)
        await asyncio.sleep(0.05)  # let batches handed over from reader threads arrive
        await self.retire_pipelines(list(self._pipelines.values()), deadline, errors)
        await self.retire_exporters(list(self._exporters), deadline, errors)
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []
        self.host.close_shared()
        self.report(final=True)
        logs.flush_suppressed(final=True)
        if errors:
            log.error("shutdown finished with errors count=%d", len(errors))
