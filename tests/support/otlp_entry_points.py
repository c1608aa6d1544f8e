"""Registers the otlp components for CLI subprocesses until pyproject.toml lists them.

Writes a minimal dist-info with an entry_points.txt (the same metadata an installed package
has) into a folder that goes on PYTHONPATH; once pyproject.toml carries the entry points the
registry sees the same factories either way.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

ENTRY_POINTS = """\
[collector.receivers]
otlp = receivers.otlp:factory

[collector.exporters]
otlp = exporters.otlp:factory
otlp_http = exporters.otlp_http:factory
"""


def registered() -> bool:
    names = {ep.name for ep in importlib.metadata.entry_points(group="collector.exporters")}
    return "otlp" in names and "otlp_http" in names


def env_with_otlp(target: Path) -> dict[str, str]:
    """Environment additions for a subprocess that must find the otlp components."""
    if registered():
        return {}
    info = target / "otlp_components_shim-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: otlp-components-shim\nVersion: 0.0.0\n"
    )
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": f"{target}{os.pathsep}{path}" if path else str(target)}
