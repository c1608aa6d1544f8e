"""BPF C sources, shipped as package data. Receivers load them through collector.bpf."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def source_dir() -> Path:
    """The folder holding ``<name>.bpf.c`` and the shared headers (used as include path)."""
    return _HERE


def source_path(program: str) -> Path:
    """Path of ``bpf/<program>.bpf.c``; raises FileNotFoundError naming it when absent."""
    path = _HERE / f"{program}.bpf.c"
    if not path.is_file():
        raise FileNotFoundError(f"no BPF program named {program!r} (looked for {path})")
    return path
