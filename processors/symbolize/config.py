"""Settings of the symbolize processor (defaults in one place)."""

from __future__ import annotations

from pydantic import Field

from collector.component import ComponentConfig


class SymbolizeConfig(ComponentConfig):
    kernel: bool = True  # resolve kernel frames from /proc/kallsyms (else drop them)
    # file:line from DWARF. Off by default: pyelftools is pure Python, and a large binary costs
    # seconds and hundreds of MB (measured in README.md). dwarf_max_bytes skips big ones.
    dwarf_lines: bool = False
    dwarf_max_bytes: int = Field(default=8 << 20, ge=0)  # .debug_info + .debug_line size cap
    # DWARF decoding time per binary; past it DWARF is turned off for that binary.
    dwarf_max_seconds: float = Field(default=5.0, ge=0)
    inline: bool = False  # expand inlined calls from DWARF DIEs (needs dwarf_lines; costly)
    demangle: bool = True  # C++ (Itanium), Rust legacy and Rust v0 names
    # Per-binary budgets for the ELF symbol tables (every binary a user maps is read as root):
    # bytes read for headers, notes, symbol and string tables; symbol entries walked; seconds
    # spent. Past one, the symbols read so far are used (counted binary_budget_exceeded).
    binary_max_bytes: int = Field(default=64 << 20, ge=4096)
    binary_max_symbols: int = Field(default=1_000_000, ge=1, le=(1 << 32) - 1)
    binary_max_seconds: float = Field(default=2.0, ge=0)
    max_binaries: int = Field(default=256, ge=1)  # loaded ELF files (symbols, DWARF)
    max_processes: int = Field(default=4096, ge=1)  # per-process stack caches
    max_stacks_per_process: int = Field(default=20_000, ge=1)
    max_kernel_locations: int = Field(default=100_000, ge=1)
