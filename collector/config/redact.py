"""Secret redaction for print-config and logs."""

from __future__ import annotations

import re
from typing import Any

from pydantic import SecretStr

REDACTED = "[REDACTED]"
_SECRET_KEY = re.compile(
    r"(pass(word)?|secret|token|api[_-]?key|authorization|auth|credential|cookie|headers?)$",
    re.IGNORECASE,
)


def redact(value: Any, key: str = "") -> Any:
    """Return a copy with secret-looking values replaced. Header maps are redacted whole."""
    if isinstance(value, SecretStr):
        return REDACTED
    if _SECRET_KEY.search(key) and value not in (None, "", {}, []):
        if isinstance(value, dict):
            return {k: REDACTED for k in value}
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    return value
