"""A third-party exporter taking "symbolized" batches keeps working beside "profiles" ones."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from collector.config.load import load_config
from collector.pipeline import Service
from collector.registry import Registry

CONFIG = """
receivers:
  synthetic:
    interval: 0.05
exporters:
  folded:
    directory: %(dir)s
  tally:
    path: %(dir)s/tally.json
service:
  pipelines:
    profiles:
      receivers: [synthetic]
      exporters: [folded, tally]
"""


def test_plugin_exporter_gets_batches_and_folded_gets_the_same_samples(
    with_sample_plugin: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(CONFIG % {"dir": out})
    cfg = load_config([str(cfg_file)], Registry())
    assert cfg.spec("exporter", "tally").factory.input == "symbolized"
    assert cfg.spec("exporter", "folded").factory.input == "profiles"

    async def main() -> None:
        svc = Service(cfg)
        await svc.start()
        await asyncio.sleep(0.5)  # the plugin sends a batch every 50 ms
        await svc.shutdown()

    asyncio.run(main())
    tally = json.loads((out / "tally.json").read_text())
    folded: dict[str, int] = {}
    for f in out.glob("*.folded"):
        for line in f.read_text().splitlines():
            stack, n = line.rsplit(" ", 1)
            leaf = stack.rsplit(";", 1)[-1]
            folded[leaf] = folded.get(leaf, 0) + int(n)
    assert tally["batches"] >= 2
    assert tally["counts"] == folded  # every sample reached both, once
    assert folded["work"] == 3 * folded["idle"] > 0
