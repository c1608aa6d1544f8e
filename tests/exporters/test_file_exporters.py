"""The folded and pprof exporters as the pipeline runs them: factory, start, export, shutdown."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from pathlib import Path

import pytest

from collector.component import CreateSettings, Factory
from collector.encoding import folded_totals
from collector.errors import EnvironmentProblem
from collector.host import Host
from collector.model import WindowSettings
from exporters.folded import factory as folded_factory
from exporters.pprof import factory as pprof_factory
from tests.collector.pipeline.graph import Graph
from tests.support.encoding_pprof import decode, go_pprof
from tests.support.encoding_samples import CPU, EXPECTED_FOLDED, OFF_CPU, batch, profile_set

FACTORIES = {"folded": folded_factory, "pprof": pprof_factory}
SUFFIX = {"folded": ".folded", "pprof": ".pb.gz"}


def _create(factory: Factory, **cfg: object):
    config = factory.config_model.model_validate(cfg)
    return factory.create(CreateSettings(factory.type, logging.getLogger(factory.type)), config)


def _run(factory: Factory, batches: list, **cfg: object) -> Host:
    async def go() -> Host:
        host = Host()
        e = _create(factory, **cfg)
        await e.start(host)
        for b in batches:
            await e.export(b)
        await e.shutdown()
        return host

    return asyncio.run(go())


@pytest.mark.parametrize("name", ["folded", "pprof"])
def test_factory_contract(name: str) -> None:
    f = FACTORIES[name]
    assert (f.type, f.kind, f.input, f.output) == (name, "exporter", "profiles", None)
    config = f.config_model.model_validate({"directory": "/tmp", "interval": "2s"})
    assert f.window is not None
    assert f.window(config) == WindowSettings(2.0, 1_000_000)


@pytest.mark.parametrize("name", ["folded", "pprof"])
def test_cpu_and_off_cpu_go_to_separate_files(tmp_path: Path, name: str) -> None:
    batches = [batch(CPU), batch(OFF_CPU, value=1000), batch(CPU, scale=2)]
    host = _run(FACTORIES[name], batches, directory=str(tmp_path / "p"))
    files = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert len(files) == 2 and all(f.endswith(SUFFIX[name]) for f in files)
    assert [re.match(r"^(\w+)-\d{8}T\d{6}Z-\d{6}\.", f).group(1) for f in files] == [
        "cpu",
        "off_cpu",
    ]
    assert host.counters.get(name, "files_written") == 2
    assert host.counters.get(name, "samples_written") == 60


def test_folded_files_hold_the_expected_stacks(tmp_path: Path) -> None:
    _run(folded_factory, [batch(CPU), batch(OFF_CPU, value=1000)], directory=tmp_path)
    by_type = {p.name.split("-")[0]: p.read_text() for p in tmp_path.glob("*.folded")}
    cpu = dict(line.rsplit(" ", 1) for line in by_type["cpu"].splitlines())
    off = dict(line.rsplit(" ", 1) for line in by_type["off_cpu"].splitlines())
    assert {k: int(v) for k, v in cpu.items()} == EXPECTED_FOLDED
    assert {k: int(v) for k, v in off.items()} == {k: v * 1000 for k, v in EXPECTED_FOLDED.items()}


def test_pprof_file_reads_back_with_go_pprof(tmp_path: Path) -> None:
    _run(pprof_factory, [batch(CPU, scale=2)], directory=tmp_path, gzip_level=1)
    (path,) = tmp_path.glob("cpu-*.pb.gz")
    p = decode(path.read_bytes())
    assert sum(s.value[0] for s in p.sample) == 30
    top = go_pprof(path, "-top", "-sample_index=samples")
    assert "Total samples = 30" in top
    flat = Counter()
    for line, v in folded_totals(profile_set(CPU, scale=2)).items():
        flat[line.rsplit(";", 1)[-1]] += v
    assert re.search(rf"^\s+{flat['square']} .* square \(inline\)$", top, re.M), top
    assert re.search(rf"^\s+{flat['ksys_write']} .* ksys_write$", top, re.M), top


@pytest.mark.parametrize("name", ["folded", "pprof"])
def test_unwritable_directory_fails_start_naming_it(tmp_path: Path, name: str) -> None:
    (tmp_path / "plain-file").write_text("")
    bad = tmp_path / "plain-file" / "profiles"
    e = _create(FACTORIES[name], directory=str(bad))
    with pytest.raises(EnvironmentProblem, match=re.escape(str(bad))):
        asyncio.run(e.start(Host()))


def test_pprof_gzip_level_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="gzip_level"):
        pprof_factory.config_model.model_validate({"directory": str(tmp_path), "gzip_level": 0})


def test_folded_and_pprof_in_one_pipeline_write_the_same_windows(tmp_path: Path) -> None:
    g = Graph()
    g.add("receiver", "r", output="symbolized")
    cfg = {"directory": str(tmp_path), "interval": 3600}
    made = {
        name: g.add_real("exporter", name, f, f.config_model.model_validate(cfg))
        for name, f in FACTORIES.items()
    }
    g.pipeline("profiles", ["r"], list(FACTORIES))
    svc = g.build()

    async def main() -> None:
        await svc.start()
        for b in (batch(CPU), batch(OFF_CPU, value=1000), batch(CPU, scale=2)):
            g.made["r"].consume(b)
        await svc.shutdown()

    asyncio.run(main())
    assert all(len(m) == 1 for m in made.values())
    assert svc.host.counters.get("pipelines/profiles", "windows_closed") == 2  # one per type
    stems = {p.name.split(".")[0] for p in tmp_path.iterdir()}
    assert len(stems) == 2  # the same window start and sequence in both exporters' names
    for stem in stems:
        folded = sum(folded_totals_of(tmp_path / f"{stem}.folded").values())
        p = decode((tmp_path / f"{stem}.pb.gz").read_bytes())
        assert folded == sum(s.value[0] for s in p.sample)
    for name in FACTORIES:
        assert svc.host.counters.get(f"exporters/{name}", "samples_written") == 60


def folded_totals_of(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (ln.rsplit(" ", 1) for ln in path.read_text().splitlines())}
