"""Durations in config: a number of seconds, or a string like ``500ms``, ``10s``, ``2m``, ``1h``.

Shared by every component so the same spelling works everywhere.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(us|ms|s|m|h)?\s*$")


def parse_duration(value: object) -> object:
    """Seconds as a number, or a string with a unit -> float seconds (others pass through)."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            raise ValueError(f"not a duration: {value!r} (use e.g. 10, '10s', '500ms', '1m')")
        return float(m.group(1)) * _UNITS[m.group(2) or "s"]
    return value


# Non-negative seconds; a field adds its own bounds (e.g. Field(gt=0)).
Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
