"""Settings of the flamegraph exporter: those of every file exporter, plus the page server."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from collector.exporthelper import FileExporterConfig


def split_address(value: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8000`` for IPv6) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"serve {value!r} is not host:port, e.g. 127.0.0.1:8000")
    return host.removeprefix("[").removesuffix("]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FlamegraphConfig(FileExporterConfig):
    serve: str | None = None  # e.g. "127.0.0.1:8000": a page listing the latest graphs
    svg: bool = True  # also write a static .svg next to each .html
    max_nodes: int = Field(200_000, ge=100)  # frames per graph; the smallest are left out

    @field_validator("serve")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None:
            split_address(v)
        return v

    def address(self) -> tuple[str, int] | None:
        return split_address(self.serve) if self.serve else None
