"""Settings of the symbolize processor (defaults in one place)."""

from __future__ import annotations

from pydantic import Field

from collector.component import ComponentConfig


class SymbolizeConfig(ComponentConfig):
    kernel: bool = True  # resolve kernel frames from /proc/kallsyms (else drop them)
    dwarf_lines: bool = True  # file:line from DWARF when the binary carries it
    inline: bool = True  # expand inlined calls from DWARF (needs dwarf_lines)
    demangle: bool = True  # C++ (Itanium) and Rust legacy names
    max_binaries: int = Field(default=256, ge=1)  # loaded ELF files (symbols, DWARF)
    max_processes: int = Field(default=4096, ge=1)  # per-process stack caches
    max_stacks_per_process: int = Field(default=20_000, ge=1)
    max_kernel_locations: int = Field(default=100_000, ge=1)
