"""``${env:NAME}`` and ``${env:NAME:-default}`` expansion, as the OTel Collector does it.

A scalar that is exactly one reference takes the variable's value parsed as YAML, so
``frequency: ${env:HZ}`` becomes an int; references inside a longer string are substituted
as text. ``$$`` escapes a literal dollar.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from collector.errors import ConfigError

_REF = re.compile(r"\$\$|\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_BAD_REF = re.compile(r"\$\{(?!env:[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\})[^}]*\}")


def expand(value: Any, where: str, env: Mapping[str, str] | None = None) -> Any:
    env = os.environ if env is None else env
    if isinstance(value, dict):
        return {k: expand(v, f"{where}.{k}", env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, f"{where}[{i}]", env) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value
    bad = _BAD_REF.search(value.replace("$$", ""))
    if bad:
        raise ConfigError(
            f"{where}: cannot expand {bad.group(0)!r}: use ${{env:NAME}} or ${{env:NAME:-default}}"
        )

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{where}: environment variable {name} is not set "
            f"(set it, or give a default: ${{env:{name}:-value}})"
        )

    whole = _REF.fullmatch(value)
    if whole and whole.group(0) != "$$":
        text = one(whole)
        try:
            return yaml.safe_load(text) if text.strip() else text
        except yaml.YAMLError:
            return text
    return _REF.sub(one, value)
