"""The k8s processor against a real HTTP server on loopback that serves pod lists as the
kubelet's /pods does (the lists from testdata; the server can switch lists or fail)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from collector.component import CreateSettings
from collector.host import Host
from collector.model import ProcessInfo, Sample, Stack, SymbolizedBatch, cpu_profile_type
from processors.k8s import K8sConfig, K8sProcessor

DATA = Path(__file__).parent / "testdata"
PODS = json.loads((DATA / "kubelet-pods.json").read_text())
EXPECTED = json.loads((DATA / "kubelet-pods.expected.json").read_text())["by_container"]
APP_CID = next(c for c, a in EXPECTED.items() if a["k8s.container.name"] == "istio-proxy")
NEW_CID = "f" * 64


class Kubelet:
    """GET /pods -> ``self.body`` with ``self.status``; counts requests."""

    def __init__(self) -> None:
        self.body = json.dumps(PODS).encode()
        self.status = 200
        self.requests = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(body=self.body, status=self.status, content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/pods", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/pods"

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def run(coro_fn: Callable[[Kubelet], Any]) -> Any:
    async def main() -> Any:
        kubelet = Kubelet()
        await kubelet.start()
        try:
            return await coro_fn(kubelet)
        finally:
            await kubelet.stop()

    return asyncio.run(main())


def processor(**cfg: Any) -> tuple[K8sProcessor, Host]:
    settings = CreateSettings("processors/k8s", logging.getLogger("test.k8s"))
    return K8sProcessor(settings, K8sConfig(**cfg)), Host()


def batch(*procs: ProcessInfo) -> SymbolizedBatch:
    stack = Stack(())
    samples = [Sample(stack, p, p.pid, 0, "x", 1, 1) for p in procs]
    return SymbolizedBatch(cpu_profile_type(99), samples, "receivers/cpu")


def attrs_of(s: Sample) -> dict[str, str]:
    return dict(s.process.attributes)


@pytest.fixture
def fast() -> dict[str, Any]:
    return {"refresh_interval": 60, "min_refresh_interval": 0, "timeout": 5}


def test_processes_get_their_pods_names(fast: dict[str, Any]) -> None:
    app = ProcessInfo(10, "envoy", container_id=APP_CID)
    host_proc = ProcessInfo(11, "sshd")

    async def go(k: Kubelet) -> SymbolizedBatch:
        p, host = processor(endpoint=k.url, **fast)
        await p.start(host)
        try:
            b = batch(app, app, host_proc)
            out = await p.process(b)
            assert [s.process for s in b.samples] == [app, app, host_proc]  # not in place
            assert host.counters.get("processors/k8s", "refreshes") == 1
            return out
        finally:
            await p.shutdown()

    out = run(go)
    assert attrs_of(out.samples[0]) == EXPECTED[APP_CID]
    assert out.samples[0].process is out.samples[1].process  # interned: one per process
    assert out.samples[0].process.pid == 10 and out.samples[0].process.executable_name == "envoy"
    assert out.samples[2].process is host_proc  # no container: unchanged


def test_a_new_container_triggers_a_refresh(fast: dict[str, Any]) -> None:
    newcomer = ProcessInfo(20, "app", container_id=NEW_CID)

    async def go(k: Kubelet) -> tuple[SymbolizedBatch, SymbolizedBatch, int]:
        p, host = processor(endpoint=k.url, **fast)
        await p.start(host)
        try:
            first = await p.process(batch(newcomer))
            assert host.counters.get("processors/k8s", "container_unknown") == 1
            pods = json.loads(k.body)
            started = json.loads(json.dumps(pods["items"][1]))
            started["metadata"]["name"] = "metrics-1"
            started["status"]["containerStatuses"][0]["containerID"] = f"cri-o://{NEW_CID}"
            pods["items"].append(started)
            k.body = json.dumps(pods).encode()
            for _ in range(500):  # the unknown id woke the refresh loop
                if host.counters.get("processors/k8s", "refreshes") >= 2:
                    break
                await asyncio.sleep(0.01)
            second = await p.process(batch(newcomer))
            return first, second, k.requests
        finally:
            await p.shutdown()

    first, second, requests = run(go)
    assert first.samples[0].process is newcomer
    assert attrs_of(second.samples[0])["k8s.pod.name"] == "metrics-1"
    assert requests == 2


def test_kubelet_errors_are_counted_and_the_last_list_kept(fast: dict[str, Any]) -> None:
    app = ProcessInfo(10, "envoy", container_id=APP_CID)

    async def go(k: Kubelet) -> tuple[SymbolizedBatch, Host]:
        p, host = processor(endpoint=k.url, **fast)
        await p.start(host)
        try:
            for status, body in ((500, b"oops"), (200, b"{not json"), (200, b"x" * 4096)):
                k.status, k.body = status, body
                await p._refresh()
            return await p.process(batch(app)), host
        finally:
            await p.shutdown()

    out, host = run(go)
    assert attrs_of(out.samples[0]) == EXPECTED[APP_CID]
    assert host.counters.get("processors/k8s", "refresh_errors") == 3


def test_oversized_list_is_refused(fast: dict[str, Any]) -> None:
    async def go(k: Kubelet) -> Host:
        p, host = processor(endpoint=k.url, max_response_bytes=1024, **fast)
        await p.start(host)
        await p.shutdown()
        return host

    host = run(go)
    assert host.counters.get("processors/k8s", "refresh_errors") == 1
    assert host.counters.get("processors/k8s", "refreshes") == 0


def test_unreachable_kubelet_does_not_stop_the_pipeline() -> None:
    async def go() -> tuple[SymbolizedBatch, Host]:
        # Port 9 on loopback: nothing listens, the connection is refused at once.
        p, host = processor(endpoint="http://127.0.0.1:9/pods", timeout=2)
        await p.start(host)
        try:
            return await p.process(batch(ProcessInfo(1, "x", container_id=APP_CID))), host
        finally:
            await p.shutdown()

    out, host = asyncio.run(go())
    assert out.samples[0].process.attributes == ()
    assert host.counters.get("processors/k8s", "refresh_errors") == 1


def test_env_source_names_every_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "web-1")
    monkeypatch.setenv("POD_NAMESPACE", "shop")
    monkeypatch.delenv("POD_UID", raising=False)
    monkeypatch.delenv("NODE_NAME", raising=False)
    procs = [ProcessInfo(1, "a"), ProcessInfo(2, "b", attributes=(("k8s.pod.name", "old"),))]

    async def go() -> SymbolizedBatch:
        p, host = processor(source="env")
        await p.start(host)
        try:
            return await p.process(batch(*procs))
        finally:
            await p.shutdown()

    out = asyncio.run(go())
    for s in out.samples:
        assert attrs_of(s) == {"k8s.pod.name": "web-1", "k8s.namespace.name": "shop"}


def test_token_only_over_https() -> None:
    with pytest.raises(ValueError, match="https"):
        K8sConfig(token_file="/var/run/secrets/token")
