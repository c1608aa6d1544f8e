"""The k8s processor: adds a process's pod, namespace and container names to its ProcessInfo.

It runs after symbolize. The symbolizer interns one ProcessInfo per process lifetime, so the
enriched copy is cached by that object: per sample the cost is one identity check (same
process as the previous sample) or one dict get. Samples whose process gains attributes are
copied (a batch from the otlp receiver is shared by every pipeline that lists it, so it is
never changed in place). The pod list is refreshed every ``refresh_interval`` on the event
loop, and at once (at most every ``min_refresh_interval``) for a container id it lacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import ssl
import time

import aiohttp

from collector.component import CreateSettings
from collector.host import Host
from collector.model import ProcessInfo, Sample, SymbolizedBatch
from processors.k8s.config import K8sConfig
from processors.k8s.pods import Attributes, PodIndex, downward_api_attributes, index_pod_list

_MAX_CACHE = 16384  # enriched processes kept (cleared whole when full or the list changes)


class PodListError(Exception):
    """The pod list could not be fetched or read; the message says why, in one line."""


class K8sProcessor:
    def __init__(self, settings: CreateSettings, config: K8sConfig) -> None:
        self.id = settings.id
        self.log: logging.Logger = settings.logger or logging.getLogger(__name__)
        self.config = config
        self._host: Host | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._by_container: dict[str, Attributes] = {}
        self._env_attrs: Attributes = ()
        self._cache: dict[int, tuple[ProcessInfo, ProcessInfo]] = {}  # id(info) -> (info, out)
        self._last_fetch = 0.0
        self._failing = False
        self.pods = 0

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self, host: Host) -> None:
        self._host = host
        if self.config.source == "env":
            e = self.config.env
            self._env_attrs = downward_api_attributes(
                os.environ, e.pod_name, e.namespace_name, e.pod_uid, e.node_name
            )
            if not self._env_attrs:
                self.log.warning(
                    "k8s processor id=%s: none of %s is set; add them from the downward API "
                    "(deploy/sidecar.yaml)",
                    self.id,
                    ", ".join((e.pod_name, e.namespace_name, e.pod_uid, e.node_name)),
                )
            return
        self._session = aiohttp.ClientSession(headers=self._headers())
        await self._refresh()  # the first window gets names too, when the kubelet answers
        self._task = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def shutdown(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # ---- per batch ---------------------------------------------------------------------
    async def process(self, batch: SymbolizedBatch) -> SymbolizedBatch:
        out: list[Sample] | None = None
        last_in: ProcessInfo | None = None
        last_out: ProcessInfo | None = None
        for i, s in enumerate(batch.samples):
            p = s.process
            if p is not last_in:
                last_in, last_out = p, self._enriched(p)
            if last_out is not p:
                if out is None:
                    out = list(batch.samples[:i])
                out.append(
                    Sample(
                        s.stack,
                        last_out,
                        s.tid,
                        s.cpu,
                        s.comm,
                        s.time_ns,
                        s.value,
                        s.trace_id,
                        s.span_id,
                        s.span_name,
                        s.thread_name,
                        s.more,
                    )
                )
            elif out is not None:
                out.append(s)
        if out is None:
            return batch
        return SymbolizedBatch(
            batch.profile_type, out, batch.receiver_id, batch.counters, batch.window_end
        )

    def _enriched(self, p: ProcessInfo) -> ProcessInfo:
        hit = self._cache.get(id(p))
        if hit is not None and hit[0] is p:
            return hit[1]
        attrs = self._attributes(p)
        new = p if not attrs else dataclasses.replace(p, attributes=_merge(p.attributes, attrs))
        if len(self._cache) >= _MAX_CACHE:
            self._cache.clear()
        self._cache[id(p)] = (p, new)  # keeps p alive, so its id cannot be reused meanwhile
        return new

    def _attributes(self, p: ProcessInfo) -> Attributes:
        if self.config.source == "env":
            return self._env_attrs
        if not p.container_id:
            return ()
        attrs = self._by_container.get(p.container_id)
        if attrs is None:
            self._count("container_unknown")
            self._wake.set()  # a pod that started since the last list, perhaps
            return ()
        return attrs

    # ---- the pod list ------------------------------------------------------------------
    async def _refresh_loop(self) -> None:
        c = self.config
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), c.refresh_interval)
            wait = c.min_refresh_interval - (time.monotonic() - self._last_fetch)
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            await self._refresh()

    async def _refresh(self) -> None:
        self._last_fetch = time.monotonic()
        try:
            idx = await self._fetch()
        except PodListError as exc:
            self._count("refresh_errors")
            if not self._failing:  # once per outage, not every interval
                self.log.warning("k8s processor id=%s: pod list unavailable: %s", self.id, exc)
            self._failing = True
            return
        if self._failing:
            self.log.info("k8s processor id=%s: pod list available again", self.id)
        self._failing = False
        self._count("refreshes")
        self._count("pods_skipped", idx.skipped)
        self._count("containers_truncated", idx.truncated)
        self.pods = idx.pods
        if idx.by_container != self._by_container:
            self._by_container = idx.by_container
            self._cache.clear()  # names changed: enrich again

    async def _fetch(self) -> PodIndex:
        c = self.config
        assert self._session is not None
        try:
            async with self._session.get(
                c.endpoint,
                timeout=aiohttp.ClientTimeout(total=c.timeout),
                ssl=self._ssl(),
            ) as resp:
                if resp.status != 200:
                    raise PodListError(f"{c.endpoint} answered HTTP {resp.status}")
                body = await resp.content.read(c.max_response_bytes + 1)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise PodListError(f"{c.endpoint}: {type(exc).__name__}: {exc}") from None
        if len(body) > c.max_response_bytes:
            raise PodListError(f"pod list larger than max_response_bytes={c.max_response_bytes}")
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise PodListError(f"pod list is not JSON: {exc}") from None
        return index_pod_list(doc, c.max_containers)

    def _headers(self) -> dict[str, str]:
        if not self.config.token_file:
            return {}
        try:
            with open(self.config.token_file) as f:
                return {"Authorization": f"Bearer {f.read().strip()}"}
        except OSError as exc:
            self.log.warning("k8s processor id=%s: token_file unreadable: %s", self.id, exc)
            return {}

    def _ssl(self) -> ssl.SSLContext | bool:
        c = self.config
        if not c.endpoint.startswith("https://"):
            return True
        if c.insecure_skip_verify:
            return False
        return ssl.create_default_context(cafile=c.ca_file or None)

    def _count(self, name: str, n: int = 1) -> None:
        if n and self._host is not None:
            self._host.counters.add(self.id, name, n)


def _merge(old: Attributes, new: Attributes) -> Attributes:
    """Keys from ``new`` win (one value per key); the result stays sorted."""
    keys = {k for k, _ in new}
    return tuple(sorted([kv for kv in old if kv[0] not in keys] + list(new)))
