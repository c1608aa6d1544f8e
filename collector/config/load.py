"""Read, merge, expand and validate config files into ready-to-build components.

Every mistake becomes one ConfigError line naming the file, the component id, the field and
what is allowed. No traceback reaches the user for a config mistake.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from collector.component import ComponentConfig, Factory, Kind
from collector.config.expand import expand
from collector.config.schema import RootConfig, pipeline_signal, split_id
from collector.errors import ConfigError
from collector.registry import Registry

SECTIONS: tuple[tuple[str, Kind], ...] = (
    ("receivers", "receiver"),
    ("processors", "processor"),
    ("exporters", "exporter"),
)


@dataclass(frozen=True)
class ComponentSpec:
    id: str
    kind: Kind
    factory: Factory
    config: ComponentConfig
    source: str  # the file that defined it


@dataclass
class LoadedConfig:
    root: RootConfig
    files: list[str]
    components: dict[tuple[Kind, str], ComponentSpec] = field(default_factory=dict)

    def spec(self, kind: Kind, component_id: str) -> ComponentSpec:
        return self.components[(kind, component_id)]

    def needs_bpf(self) -> bool:
        return any(s.factory.needs_bpf for s in self.components.values())

    def needs_tracefs(self) -> bool:
        return any(s.factory.needs_tracefs for s in self.components.values())


def _read(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: invalid YAML: {where}{problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (receivers, ..., service)")
    return data


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def describe_errors(exc: ValidationError, model: type[BaseModel]) -> str:
    """Pydantic errors as '<field>: <what is wrong>' joined by '; '."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(_field_names(model, err["loc"][:-1])) or "none"
            parts.append(f"unknown field {loc!r} (allowed: {allowed})")
        elif err["type"] == "missing":
            parts.append(f"field {loc!r} is required")
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            parts.append(f"field {loc!r}: {err['msg']}{shown}")
    return "; ".join(parts)


def _field_names(model: type[BaseModel], path: Iterable[Any]) -> list[str]:
    current: Any = model
    for part in path:
        info = getattr(current, "model_fields", {}).get(part)
        if info is None:
            return []
        current = info.annotation
    fields = getattr(current, "model_fields", None)
    return sorted(fields) if fields else []


def load_config(paths: list[str], registry: Registry) -> LoadedConfig:
    if not paths:
        raise ConfigError("no config given: use --config FILE (repeatable)")
    merged: dict[str, Any] = {}
    origin: dict[tuple[str, str], str] = {}
    for path in paths:
        data = _read(path)
        for section, _ in SECTIONS:
            sec = data.get(section)
            if isinstance(sec, dict):
                for cid in sec:
                    origin[(section, str(cid))] = path
        merged = _merge(merged, data)
    files = ", ".join(paths)
    merged = expand(merged, files)
    try:
        root = RootConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(f"{files}: {describe_errors(exc, RootConfig)}") from None

    loaded = LoadedConfig(root=root, files=list(paths))
    for section, kind in SECTIONS:
        for cid, settings in getattr(root, section).items():
            src = origin.get((section, cid), files)
            try:
                ctype, _ = split_id(cid)
            except ValueError as exc:
                raise ConfigError(f"{src}: {section}: {exc}") from None
            factory = registry.get(kind, ctype, where=f"{src}: {section}.{cid}")
            try:
                cfg = factory.config_model.model_validate(settings or {})
            except ValidationError as exc:
                msg = describe_errors(exc, factory.config_model)
                raise ConfigError(f"{src}: {section}.{cid}: {msg}") from None
            loaded.components[(kind, cid)] = ComponentSpec(cid, kind, factory, cfg, src)
    _check_graph(loaded, files)
    return loaded


def _check_graph(cfg: LoadedConfig, files: str) -> None:
    used: set[tuple[Kind, str]] = set()
    for name, pipe in cfg.root.service.pipelines.items():
        where = f"{files}: service.pipelines.{name}"
        for section, kind in SECTIONS:
            ids = getattr(pipe, section)
            if len(set(ids)) != len(ids):
                raise ConfigError(f"{where}.{section}: lists a component twice")
            for cid in ids:
                if (kind, cid) not in cfg.components:
                    defined = sorted(c for k, c in cfg.components if k == kind)
                    raise ConfigError(
                        f"{where}.{section}: {cid!r} is not defined under top-level "
                        f"'{section}' (defined: {', '.join(defined) or 'none'})"
                    )
                used.add((kind, cid))
        if pipeline_signal(name) == "traces":
            _check_traces(cfg, pipe, where)
        else:
            if not pipe.exporters:
                raise ConfigError(f"{where}.exporters: a profiles pipeline needs an exporter")
            _check_data_kinds(cfg, name, pipe, where)
    for (kind, cid), spec in cfg.components.items():
        if kind == "receiver" and (kind, cid) not in used:
            raise ConfigError(
                f"{spec.source}: receivers.{cid}: is in no pipeline "
                "(add it to a service.pipelines entry or remove it)"
            )


def _check_traces(cfg: LoadedConfig, pipe: Any, where: str) -> None:
    """Spans go through unchanged: no processors; receivers and exporters must speak traces."""
    if pipe.processors:
        raise ConfigError(
            f"{where}.processors: a traces pipeline takes no processors "
            "(spans are forwarded unchanged; correlate belongs in a profiles pipeline)"
        )
    for section, kind in (("receivers", "receiver"), ("exporters", "exporter")):
        for cid in getattr(pipe, section):
            if "traces" not in cfg.spec(kind, cid).factory.signals:  # type: ignore[arg-type]
                raise ConfigError(
                    f"{where}.{section}: {cid!r} does not handle traces "
                    "(the otlp receiver and otlp exporter do)"
                )


def _check_data_kinds(cfg: LoadedConfig, name: str, pipe: Any, where: str) -> None:
    for rid in pipe.receivers:
        if "profiles" not in cfg.spec("receiver", rid).factory.signals:
            raise ConfigError(f"{where}.receivers: {rid!r} gives no profiles (traces only)")
    kinds = {cfg.spec("receiver", r).factory.output for r in pipe.receivers}
    for pid in pipe.processors:
        f = cfg.spec("processor", pid).factory
        if f.input == "any":  # a pass-through processor: the data keeps its kind
            continue
        if f.input not in kinds:
            raise ConfigError(
                f"{where}: processor {pid!r} takes {f.input} data but gets "
                f"{'/'.join(sorted(k or '?' for k in kinds))}"
            )
        kinds = {f.output}
    for eid in pipe.exporters:
        f = cfg.spec("exporter", eid).factory
        # The pipeline windows symbolized batches into ProfileSets for "profiles" exporters.
        takes = {"symbolized"} if f.input == "profiles" else {f.input}
        if kinds != takes:
            hint = " (add the 'symbolize' processor)" if "raw" in kinds else ""
            raise ConfigError(
                f"{where}: exporter {eid!r} takes {f.input} data but the pipeline gives "
                f"{'/'.join(sorted(k or '?' for k in kinds))}{hint}"
            )
