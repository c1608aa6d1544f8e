"""Reload: swap a running Service to a new, already validated config, rebuilding only what
changed.

A component is kept when its id, type and settings are equal in both configs (compared as
pydantic models: every field, defaults included); a kept receiver is never stopped, so a BPF
program whose settings did not change is not recompiled. A pipeline is kept when its
processors and exporters are the same list of kept components; its receivers may change.

Order (the old parts drain into the exporters before those are replaced):

1. build every new part (nothing started yet; a failure here changes nothing);
2. point kept receivers at the new pipelines' queues (they buffer until started);
3. stop receivers that changed or went away;
4. start the new pipelines' processors (before the old ones stop, so services they share,
   like one symbolizer's tables, stay loaded);
5. drain and retire the old pipelines, then the old exporters (which releases what they
   hold, e.g. a persistent queue's lock, for their replacements);
6. start new exporters, new pipelines, new receivers.

If step 6 fails (a port taken meanwhile), the previous config is applied again the same way,
and if that fails too the collector stops with a runtime error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from collector.config.load import LoadedConfig

if TYPE_CHECKING:
    from collector.pipeline.service import Service, _Exporter, _Pipeline, _Receiver

log = logging.getLogger("collector.service")


def same_component(old: LoadedConfig, new: LoadedConfig, kind: str, cid: str) -> bool:
    a = old.components.get((kind, cid))  # type: ignore[arg-type]
    b = new.components.get((kind, cid))  # type: ignore[arg-type]
    return (
        a is not None
        and b is not None
        and a.factory.type == b.factory.type
        and a.factory.origin == b.factory.origin
        and type(a.config) is type(b.config)
        and a.config == b.config
    )


def same_pipeline(old: LoadedConfig, new: LoadedConfig, name: str) -> bool:
    a = old.root.service.pipelines.get(name)
    b = new.root.service.pipelines.get(name)
    if a is None or b is None or a.processors != b.processors or a.exporters != b.exporters:
        return False
    if old.root.service.queue_size != new.root.service.queue_size:
        return False
    return all(same_component(old, new, "processor", p) for p in b.processors) and all(
        same_component(old, new, "exporter", e) for e in b.exporters
    )


class _Rejected(Exception):
    """Building the new parts failed: nothing was changed."""


async def apply(svc: Service, new: LoadedConfig) -> dict[str, list[str]]:
    """Swap ``svc`` to ``new``; returns what was kept, replaced, added and removed."""
    old = svc.cfg
    try:
        return await _swap(svc, old, new)
    except _Rejected as r:
        raise r.__cause__ from None  # type: ignore[misc]
    except Exception as exc:
        log.error("reload failed starting the new parts, restoring the previous config: %s", exc)
        try:
            await _swap(svc, svc.cfg, old)
        except Exception as exc2:
            svc.host.report_fatal("service", f"reload failed and the old config failed: {exc2}")
            raise
        raise


async def _swap(svc: Service, old: LoadedConfig, new: LoadedConfig) -> dict[str, list[str]]:
    summary: dict[str, list[str]] = {"kept": [], "replaced": [], "added": [], "removed": []}

    def note(what: str, kept: bool, existed: bool) -> None:
        summary["kept" if kept else ("replaced" if existed else "added")].append(what)

    # 1. build
    exporters: dict[str, _Exporter] = {}
    new_exporters: dict[str, _Exporter] = {}
    pipelines: dict[str, _Pipeline] = {}
    new_pipes: dict[str, _Pipeline] = {}
    receivers: dict[str, _Receiver] = {}
    new_receivers: dict[str, _Receiver] = {}
    try:
        for (kind, cid), _ in new.components.items():
            if kind != "exporter":
                continue
            kept = cid in svc._exporters and same_component(old, new, "exporter", cid)
            note(f"exporters/{cid}", kept, cid in svc._exporters)
            if kept:
                exporters[cid] = svc._exporters[cid]
            else:
                exporters[cid] = new_exporters[cid] = svc.build_exporter(new, cid)
        for name in new.root.service.pipelines:
            kept = name in svc._pipelines and same_pipeline(old, new, name)
            note(f"pipelines/{name}", kept, name in svc._pipelines)
            if kept:
                pipelines[name] = svc._pipelines[name]
            else:
                pipelines[name] = new_pipes[name] = svc.build_pipeline(new, name, exporters)
        feeds = svc.feeds(new, pipelines)
        for rid, queues in feeds.items():
            kept = rid in svc._receivers and same_component(old, new, "receiver", rid)
            note(f"receivers/{rid}", kept, rid in svc._receivers)
            if kept:
                receivers[rid] = svc._receivers[rid]
            else:
                receivers[rid] = new_receivers[rid] = svc.build_receiver(new, rid, queues)
    except Exception as exc:
        raise _Rejected() from exc
    gone_r = [r for r in svc._receivers if receivers.get(r) is not svc._receivers[r]]
    gone_p = [p for n, p in svc._pipelines.items() if pipelines.get(n) is not p]
    gone_e = [e for e in svc._exporters if exporters.get(e) is not svc._exporters[e]]
    summary["removed"] = (
        [f"receivers/{r}" for r in svc._receivers if r not in receivers]
        + [f"pipelines/{n}" for n in svc._pipelines if n not in pipelines]
        + [f"exporters/{e}" for e in svc._exporters if e not in exporters]
    )

    # 2. retarget kept receivers
    for rid, r in receivers.items():
        if rid not in new_receivers:
            r.feed.retarget(*feeds[rid])
    errors: list[str] = []
    # 3. stop changed receivers
    await svc.stop_receivers(gone_r, errors)
    await asyncio.sleep(0.05)  # batches handed over from their reader threads arrive
    # 4. new processors first, so shared services stay loaded
    for pipe in new_pipes.values():
        await svc.start_processors(pipe)
    # 5. retire the old parts
    deadline = asyncio.get_running_loop().time() + new.root.service.shutdown_timeout
    await svc.retire_pipelines(gone_p, deadline, errors)
    await svc.retire_exporters(gone_e, deadline, errors)
    svc._exporters, svc._pipelines, svc._receivers = exporters, pipelines, receivers
    svc.cfg = new
    # 6. start the new parts
    for cid, e in new_exporters.items():
        await svc.start_exporter(cid, e)
    for pipe in new_pipes.values():
        svc.run_pipeline(pipe)
    for rid, r in new_receivers.items():
        await svc.start_receiver(rid, r)
    if errors:
        log.error("reload: stopping old parts had errors count=%d", len(errors))
    return summary
