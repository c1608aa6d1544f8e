"""Component discovery through entry points, the only discovery mechanism.

Built-in components register through the same groups a third-party package uses. A plugin
is validated when it loads; a broken one is named in one clear PluginError.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib.metadata import EntryPoint, entry_points

from pydantic import BaseModel

from collector.component import Factory, Kind
from collector.errors import ConfigError, PluginError

GROUPS: dict[Kind, str] = {
    "receiver": "collector.receivers",
    "processor": "collector.processors",
    "exporter": "collector.exporters",
}
BUILTIN_DIST = "ebpf-profile-collector"


@dataclass(frozen=True)
class Broken:
    kind: Kind
    type: str
    error: str


def _origin(ep: EntryPoint) -> str:
    dist = ep.dist
    if dist is None:
        return "unknown package"
    if dist.name == BUILTIN_DIST:
        return "built-in"
    return f"{dist.name} {dist.version}"


def _validate(ep: EntryPoint, kind: Kind, obj: object) -> Factory:
    where = f"plugin {ep.name!r} ({GROUPS[kind]}: {ep.name} = {ep.value}, from {_origin(ep)})"
    if not isinstance(obj, Factory):
        raise PluginError(f"{where}: is a {type(obj).__name__}, not a collector.component.Factory")
    if obj.kind != kind:
        raise PluginError(f"{where}: factory kind is {obj.kind!r}, registered as a {kind}")
    if obj.type != ep.name:
        raise PluginError(f"{where}: factory type {obj.type!r} differs from its entry point name")
    model = obj.config_model
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise PluginError(f"{where}: config_model must be a pydantic model class")
    if model.model_config.get("extra") != "forbid":
        raise PluginError(f"{where}: config_model must forbid unknown keys (extra='forbid')")
    if not callable(obj.create):
        raise PluginError(f"{where}: create is not callable")
    if kind != "receiver" and obj.input is None:
        raise PluginError(f"{where}: a {kind} must declare the data it takes (input)")
    if kind != "exporter" and obj.output is None:
        raise PluginError(f"{where}: a {kind} must declare the data it gives (output)")
    if obj.output == "profiles":
        raise PluginError(
            f"{where}: output 'profiles' is made by the pipeline's windows only; "
            "give 'symbolized' batches"
        )
    if obj.input == "profiles" and kind != "exporter":
        raise PluginError(f"{where}: only an exporter takes 'profiles' (ProfileSets)")
    if obj.window is not None and obj.input != "profiles":
        raise PluginError(f"{where}: window is only for exporters that take 'profiles'")
    if obj.window is not None and not callable(obj.window):
        raise PluginError(f"{where}: window is not callable")
    return replace(obj, origin=_origin(ep))


class Registry:
    """Lazily loads factories; ``get`` loads one type, ``all`` loads every registered one."""

    def __init__(self) -> None:
        self._eps: dict[Kind, dict[str, EntryPoint]] = {}
        for kind, group in GROUPS.items():
            found: dict[str, EntryPoint] = {}
            for ep in entry_points(group=group):
                found.setdefault(ep.name, ep)  # first wins if two dists claim a name
            self._eps[kind] = found
        self._loaded: dict[tuple[Kind, str], Factory] = {}

    def types(self, kind: Kind) -> list[str]:
        return sorted(self._eps[kind])

    def get(self, kind: Kind, ctype: str, where: str = "") -> Factory:
        key = (kind, ctype)
        if key in self._loaded:
            return self._loaded[key]
        ep = self._eps[kind].get(ctype)
        prefix = f"{where}: " if where else ""
        if ep is None:
            known = ", ".join(self.types(kind)) or "none"
            raise ConfigError(f"{prefix}unknown {kind} type {ctype!r} (known: {known})")
        try:
            obj = ep.load()
        except Exception as exc:  # a plugin's import may fail in any way
            raise PluginError(
                f"{prefix}plugin {ctype!r} ({GROUPS[kind]}: {ep.name} = {ep.value}, from "
                f"{_origin(ep)}) failed to load: {type(exc).__name__}: {exc}"
            ) from None
        factory = _validate(ep, kind, obj)
        self._loaded[key] = factory
        return factory

    def all(self) -> tuple[list[Factory], list[Broken]]:
        good: list[Factory] = []
        broken: list[Broken] = []
        for kind in GROUPS:
            for ctype in self.types(kind):
                try:
                    good.append(self.get(kind, ctype))
                except ConfigError as exc:
                    broken.append(Broken(kind, ctype, str(exc)))
        return good, broken
