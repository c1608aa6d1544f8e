"""A reload that adds or removes a traces pipeline: the otlp receiver (settings unchanged)
keeps running and starts or stops taking spans; correlate keeps its place in the profiles
pipeline; the host's span hub lives exactly as long as someone uses it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import yaml

from collector.config.load import load_config
from collector.pipeline.service import Service
from collector.registry import Registry
from collector.spans import HUB_KEY, SpanHub
from tests.exporters.otlp.test_otlp_spans import request
from tests.receivers.otlp.test_otlp_receiver import grpc_call
from tests.support.otlp_servers import free_port

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def config(tmp_path: Path, port: int, traces: bool) -> Path:
    pipelines: dict = {
        "profiles": {"receivers": ["otlp"], "processors": ["correlate"], "exporters": ["folded"]}
    }
    if traces:
        pipelines["traces"] = {"receivers": ["otlp"]}
    doc = {
        "receivers": {"otlp": {"grpc": {"endpoint": f"127.0.0.1:{port}"}, "http": None}},
        "processors": {"correlate": {}},
        "exporters": {"folded": {"directory": str(tmp_path / "out")}},
        "service": {"pipelines": pipelines, "telemetry": {"metrics": {"address": "none"}}},
    }
    p = tmp_path / f"c{int(traces)}.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_adding_and_removing_a_traces_pipeline(tmp_path: Path) -> None:
    port = free_port()
    without = load_config([str(config(tmp_path, port, False))], Registry())
    with_traces = load_config([str(config(tmp_path, port, True))], Registry())

    async def main() -> None:
        svc = Service(without)
        await svc.start()
        try:
            assert (await grpc_call(port, TRACES, request(1)))[0] == grpc.StatusCode.UNIMPLEMENTED
            summary = await svc.reload(with_traces)
            assert "receivers/otlp" in summary["kept"] and "pipelines/traces" in summary["added"]
            assert (await grpc_call(port, TRACES, request(2)))[0] == grpc.StatusCode.OK
            for _ in range(600):  # until the pipeline loop took the batch (a hang guard)
                if svc.host.counters.get("pipelines/traces", "spans_received"):
                    break
                await asyncio.sleep(0.05)
            c = svc.host.counters.snapshot()
            assert c["pipelines/traces"]["spans_received"] == 2
            assert c["processors/correlate"]["spans_indexed"] == 2
            summary = await svc.reload(without)
            assert "pipelines/traces" in summary["removed"]
            assert (await grpc_call(port, TRACES, request(1)))[0] == grpc.StatusCode.UNIMPLEMENTED
            hub = svc.host.shared(HUB_KEY, SpanHub)  # the one correlate still subscribes to
            assert hub.subscribers == 1
            svc.host.release(HUB_KEY)
        finally:
            await svc.shutdown()
        assert hub.subscribers == 0
        assert (
            svc.host.shared(HUB_KEY, SpanHub) is not hub
        )  # released and closed with the last user

    asyncio.run(main())
