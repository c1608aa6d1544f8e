"""``collector``: run, validate, list components, print the effective config.

Exit codes: 0 ok (also after SIGINT/SIGTERM), 2 config or plugin error, 3 the machine lacks
something (root, tracefs, headers, bcc, a kernel feature), 4 a component failed at run time.
Anything else is a bug and shows its traceback.
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

from collector import __version__, logs
from collector.config.load import SECTIONS, LoadedConfig, load_config
from collector.config.redact import redact
from collector.errors import CollectorError, RuntimeFailure
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


async def _run(cfg: LoadedConfig) -> int:
    from collector.pipeline import Service

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    service = Service(cfg)
    try:
        await service.start()
        await service.run_until_stopped(stop)
        if stop.is_set():
            log.info("signal received, flushing exporters")
    finally:
        await service.shutdown()
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
        return _runner()(_run(cfg))
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
