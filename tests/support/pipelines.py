"""The profiles pipeline most tests and benchmarks run: receivers -> symbolize -> file
exporters writing below one directory. One builder, so each call site says only what it
changes; ``yaml.safe_dump`` of a dict does the quoting (a regex, a path with odd characters),
which the hand-written ``%``-templates it replaced left to luck.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

Settings = Mapping[str, object]


def _plain(value: object) -> object:
    """Paths as strings, mappings and sequences copied: what safe_dump can write."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def profiles_yaml(
    out: Path | str,
    receivers: Mapping[str, Settings],
    *,
    exporters: Sequence[str] = ("folded",),
    interval: int | str | None = 600,
    processors: Mapping[str, Settings] | None = None,
    metrics_address: str | None = "none",
    dir_per_exporter: bool = False,
) -> str:
    """The config text of one ``profiles`` pipeline.

    ``receivers`` maps each receiver id to its settings, ``processors`` likewise (default:
    symbolize alone); both run in the order given. Every exporter in ``exporters`` writes to
    ``out`` (to ``out/<exporter>`` with ``dir_per_exporter``) every ``interval`` (the
    exporter's default when None). ``metrics_address`` "none" turns the self-metrics endpoint
    off (parallel runs would fight over its port); None leaves the telemetry section out.
    """
    processors = {"symbolize": {}} if processors is None else processors
    exporter_settings: dict[str, dict[str, object]] = {}
    for name in exporters:
        directory = Path(out) / name if dir_per_exporter else out
        settings: dict[str, object] = {"directory": directory}
        if interval is not None:
            settings["interval"] = interval
        exporter_settings[name] = settings
    service: dict[str, object] = {}
    if metrics_address is not None:
        service["telemetry"] = {"metrics": {"address": metrics_address}}
    service["pipelines"] = {
        "profiles": {
            "receivers": list(receivers),
            "processors": list(processors),
            "exporters": list(exporters),
        }
    }
    config = {
        "receivers": receivers,
        "processors": processors,
        "exporters": exporter_settings,
        "service": service,
    }
    return yaml.safe_dump(_plain(config), sort_keys=False)
