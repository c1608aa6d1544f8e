"""The flamegraph exporter's files and its page server, with a real HTTP client."""

from __future__ import annotations

import asyncio
import socket
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from collector.errors import EnvironmentProblem
from collector.host import Host
from exporters.flamegraph import factory
from tests.support import encoding_samples as es
from tests.support.flamegraph_page import page_data
from tests.support.otlp_run import create


def make(tmp_path: Path, cid: str = "flamegraph", **cfg: Any) -> Any:
    return create(factory, {"directory": str(tmp_path), **cfg}, cid=cid)


def test_writes_html_and_svg_per_window_and_type(tmp_path: Path) -> None:
    async def go() -> Host:
        exp = make(tmp_path, file_mode="0640")
        host = Host()
        await exp.start(host)
        await exp.export(es.profile_set())
        await exp.export(es.profile_set(es.OFF_CPU, value=1000))
        await exp.export(es.profile_set(scale=2))
        await exp.shutdown()
        await exp.export(es.profile_set())  # after shutdown: counted, not written
        return host

    host = asyncio.run(go())
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 6
    assert sum(f.startswith("cpu-") and f.endswith(".html") for f in files) == 2
    assert sum(f.startswith("off_cpu-") and f.endswith(".svg") for f in files) == 1
    for f in tmp_path.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o640
    c = host.counters
    assert c.get("flamegraph", "files_written") == 6
    assert c.get("flamegraph", "samples_written") == 15 + 15 + 30
    assert c.get("flamegraph", "samples_dropped") == 15
    # The second cpu window is compared with the first (same shares: no change).
    second = sorted(tmp_path.glob("cpu-*.html"))[-1]
    meta = page_data(second.read_bytes())["meta"]
    assert meta["diff"] is True and meta["previous"].startswith("cpu ")
    off = page_data(next(tmp_path.glob("off_cpu-*.html")).read_bytes())["meta"]
    assert off["diff"] is False and off["unit"] == "nanoseconds"


def test_max_files_and_no_svg(tmp_path: Path) -> None:
    async def go() -> Host:
        exp = make(tmp_path, max_files=2, svg=False)
        host = Host()
        await exp.start(host)
        for _ in range(5):
            await exp.export(es.profile_set())
        await exp.shutdown()
        return host

    host = asyncio.run(go())
    assert len(list(tmp_path.glob("*.html"))) == 2 and not list(tmp_path.glob("*.svg"))
    assert host.counters.get("flamegraph", "files_deleted") == 3


def test_batches_outside_a_pipeline_are_windowed(tmp_path: Path) -> None:
    async def go() -> None:
        exp = make(tmp_path)
        await exp.start(Host())
        await exp.export(es.batch())
        await exp.flush()
        await exp.shutdown()

    asyncio.run(go())
    assert len(list(tmp_path.glob("cpu-*.html"))) == 1


def test_server_lists_the_latest_graph_of_each_exporter(tmp_path: Path) -> None:
    async def go() -> None:
        host = Host()
        a = make(tmp_path / "a", "flamegraph/cpu", serve="127.0.0.1:0")
        await a.start(host)
        # A second exporter on the same address shares the server (port 0 is one server).
        b = make(tmp_path / "b", "flamegraph/off", serve="127.0.0.1:0")
        await b.start(host)
        assert a.url == b.url
        async with aiohttp.ClientSession() as http:
            async with http.get(a.url + "index.json") as r:
                assert r.status == 200 and await r.json() == []
            await a.export(es.profile_set())
            await a.export(es.profile_set(scale=2))  # replaces the first: latest only
            await b.export(es.profile_set(es.OFF_CPU, value=10))
            async with http.get(a.url + "index.json") as r:
                listing = await r.json()
            assert [(g["exporter"], g["type"]) for g in listing] == [
                ("flamegraph/cpu", "cpu"),
                ("flamegraph/off", "off_cpu"),
            ]
            assert listing[0]["samples"] == 30
            async with http.get(a.url.rstrip("/") + listing[0]["html"]) as r:
                assert r.status == 200 and r.content_type == "text/html"
                assert page_data(await r.read())["meta"]["samples"] == 30
                assert "default-src 'none'" in r.headers["Content-Security-Policy"]
            async with http.get(a.url.rstrip("/") + listing[1]["svg"]) as r:
                assert r.status == 200 and r.content_type == "image/svg+xml"
            async with http.get(a.url) as r:
                text = await r.text()
                assert "Latest flame graphs" in text and "flamegraph/off" in text
            async with http.get(a.url + "graph/99.html") as r:
                assert r.status == 404
            await a.shutdown()  # b still serves, without a's graphs
            async with http.get(b.url + "index.json") as r:
                assert [g["exporter"] for g in await r.json()] == ["flamegraph/off"]
            url = b.url
            await b.shutdown()
            with pytest.raises(aiohttp.ClientConnectionError):
                async with http.get(url + "index.json"):
                    pass

    asyncio.run(go())


def test_an_address_in_use_is_one_clear_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]

        async def go() -> None:
            exp = make(tmp_path, serve=f"127.0.0.1:{port}")
            await exp.start(Host())

        with pytest.raises(
            EnvironmentProblem, match=f"cannot serve flame graphs on 127.0.0.1:{port}"
        ):
            asyncio.run(go())


@pytest.mark.parametrize("bad", ["8000", "localhost:", "host:99999", ":80"])
def test_bad_serve_addresses_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="not host:port"):
        factory.config_model.model_validate({"directory": str(tmp_path), "serve": bad})
