"""``collector``: run, validate, list components, print the effective config.

Exit codes: 0 ok (also after SIGINT/SIGTERM), 2 config or plugin error, 3 the machine lacks
something (root, tracefs, headers, bcc, a kernel feature), 4 a component failed at run time.
Anything else is a bug and shows its traceback.

While running: SIGHUP re-reads the same --config files and applies them if they are valid
(unchanged components keep running); the telemetry server (/metrics, /healthz, /readyz)
starts before the pipelines and stops after them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Callable

import yaml

from collector import __version__, logs, memory
from collector.config.load import SECTIONS, LoadedConfig, load_config
from collector.config.redact import redact
from collector.errors import CollectorError, RuntimeFailure
from collector.pgo import command as pgo_command  # argparse only: merging loads on use
from collector.preflight import check_bpf
from collector.registry import Registry

log = logging.getLogger("collector")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="collector", description="eBPF continuous-profiling collector (OTel Collector style)"
    )
    p.add_argument("--version", action="version", version=f"collector {__version__}")

    def add_config(sp: argparse.ArgumentParser, required: bool) -> None:
        sp.add_argument(
            "--config",
            action="append",
            default=[],
            required=required,
            metavar="FILE",
            help="config file; repeatable, later files override earlier ones",
        )

    add_config(p, False)
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None)
    sub = p.add_subparsers(dest="command")
    v = sub.add_parser("validate", help="check the config and plugins without loading BPF")
    add_config(v, True)
    sub.add_parser("components", help="list every registered component and its origin")
    pc = sub.add_parser("print-config", help="print the effective config, secrets redacted")
    add_config(pc, True)
    pgo_command.add_parser(sub)
    return p


def _effective(cfg: LoadedConfig) -> dict:
    out: dict = {}
    for section, kind in SECTIONS:
        out[section] = {
            cid: redact(spec.config.model_dump(mode="json"))
            for (k, cid), spec in cfg.components.items()
            if k == kind
        }
    out["service"] = redact(cfg.root.service.model_dump(mode="json"))
    return out


def cmd_components(registry: Registry) -> int:
    good, broken = registry.all()
    for kind in ("receiver", "processor", "exporter"):
        print(f"{kind}s:")
        for f in sorted((f for f in good if f.kind == kind), key=lambda f: f.type):
            desc = f" - {f.description}" if f.description else ""
            print(f"  {f.type:<14} {f.origin}{desc}")
    for b in broken:
        print(f"error: {b.error}", file=sys.stderr)
    return 2 if broken else 0


class _Runtime:
    """The running service, its telemetry server, and reloads (one at a time)."""

    def __init__(self, cfg: LoadedConfig, registry: Registry, log_level: str | None) -> None:
        from collector.pipeline import Service
        from collector.selfmetrics import Readiness, TelemetryServer

        self.cfg = cfg
        self.registry = registry
        self.log_level = log_level  # from the command line: wins over the config's
        self.service = Service(cfg)
        self.readiness = Readiness()
        self._server_cls = TelemetryServer
        self.server = TelemetryServer(
            cfg.root.service.telemetry.metrics, self.service.host, self.readiness
        )
        self._lock = asyncio.Lock()
        self.reloads: set[asyncio.Task[None]] = set()

    def request_reload(self) -> None:
        if self.readiness.state not in ("running", "reloading"):
            log.warning("SIGHUP ignored: the collector is %s", self.readiness.state)
            return
        task = asyncio.get_running_loop().create_task(self.reload())
        self.reloads.add(task)
        task.add_done_callback(self.reloads.discard)

    async def reload(self) -> None:
        async with self._lock:
            files = ", ".join(self.cfg.files)
            log.info("SIGHUP: reloading files=%s", files)
            try:
                new = await asyncio.to_thread(load_config, self.cfg.files, self.registry)
                if new.needs_bpf():
                    await asyncio.to_thread(check_bpf, new.needs_tracefs())
            except CollectorError as exc:
                log.error("reload rejected, the running config stays: %s", exc)
                return
            self.readiness.state = "reloading"
            try:
                summary = await self.service.reload(new)
            except CollectorError as exc:
                log.error("reload failed, the previous config was restored: %s", exc)
                return
            finally:
                self.readiness.state = "running"
            old_metrics = self.cfg.root.service.telemetry.metrics
            self.cfg = new
            logs.set_level(self.log_level or new.root.service.telemetry.logs.level)
            if new.root.service.telemetry.metrics != old_metrics:
                await self.server.stop()
                self.server = self._server_cls(
                    new.root.service.telemetry.metrics, self.service.host, self.readiness
                )
                try:
                    await self.server.start()
                except CollectorError as exc:
                    log.error("metrics endpoint off after reload: %s", exc)
            parts = " ".join(f"{k}={','.join(v) or '-'}" for k, v in summary.items())
            log.info("reloaded config files=%s %s", files, parts)


async def _run(cfg: LoadedConfig, registry: Registry, log_level: str | None = None) -> int:
    rt = _Runtime(cfg, registry, log_level)
    service = rt.service
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, rt.request_reload)
    await rt.server.start()  # probes answer while BPF programs load
    try:
        await service.start()
        rt.readiness.state = "running"
        await service.run_until_stopped(stop)
        if stop.is_set():
            log.info("signal received, flushing exporters")
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        rt.readiness.state = "stopping"
        for task in list(rt.reloads):
            await asyncio.gather(task, return_exceptions=True)
        await service.shutdown()
        await rt.server.stop()
    if service.host.fatal_error:
        raise RuntimeFailure(service.host.fatal_error)
    log.info("stopped")
    return 0


def _runner() -> Callable[..., int]:
    try:
        import uvloop

        def run(coro: object) -> int:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
                return r.run(coro)  # type: ignore[arg-type]

        return run
    except ImportError:  # uvloop is optional at run time
        return asyncio.run


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "pgo":
            return pgo_command.run(args)
        registry = Registry()
        if args.command == "components":
            return cmd_components(registry)
        cfg = load_config(args.config, registry)
        level = args.log_level or cfg.root.service.telemetry.logs.level
        logs.setup(level)
        if args.command == "validate":
            print(f"config ok: {', '.join(cfg.files)}")
            return 0
        if args.command == "print-config":
            print(yaml.safe_dump(json.loads(json.dumps(_effective(cfg))), sort_keys=False))
            return 0
        if cfg.needs_bpf():
            check_bpf(cfg.needs_tracefs())
        # Before the event loop and any reader or worker thread exist: arenas made earlier stay.
        tuned = memory.tune_malloc()
        log.info(
            "malloc %s", " ".join(f"{k}={v}" for k, v in tuned.items()) or "defaults (not tuned)"
        )
        return _runner()(_run(cfg, registry, args.log_level))
    except CollectorError as exc:
        kind = type(exc).__name__
        print(f"collector: {kind_label(kind)}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 0


def kind_label(kind: str) -> str:
    return {
        "ConfigError": "config error",
        "PluginError": "plugin error",
        "EnvironmentProblem": "cannot run here",
        "RuntimeFailure": "runtime failure",
    }.get(kind, "error")


if __name__ == "__main__":
    sys.exit(main())
