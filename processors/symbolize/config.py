"""Settings of the symbolize processor (defaults in one place)."""

from __future__ import annotations

from pydantic import Field

from collector.component import ComponentConfig


class SymbolizeConfig(ComponentConfig):
    kernel: bool = True  # resolve kernel frames from /proc/kallsyms (else drop them)
    # file:line and inlined calls from DWARF through symbolic's SymCache (lines.py): 0.25 s
    # once per binary, then cached on disk; measured in README.md.
    dwarf_lines: bool = True
    # Largest object file (binary or debug file) handed to symbolic, read whole into memory.
    dwarf_max_bytes: int = Field(default=256 << 20, ge=0)
    # A SymCache build that takes longer is counted dwarf_budget_exceeded (one build cannot be
    # interrupted: its cost is bounded by dwarf_max_bytes; the result is kept and cached).
    dwarf_max_seconds: float = Field(default=5.0, ge=0)
    inline: bool = True  # show inlined calls as frames of their own (needs dwarf_lines)
    # Function.start_line and its file from DW_AT_decl_line/decl_file (collector/dwarf), read
    # lazily per compile unit; needs dwarf_lines. Without it: the first instruction's line.
    decl_lines: bool = True
    # Time for decl lines per binary (all units walked together); past it, counted
    # decl_budget_exceeded, that binary's functions keep the first instruction's line.
    decl_max_seconds: float = Field(default=3.0, ge=0)
    # Separate debug files: /usr/lib/debug/.build-id, then .gnu_debuglink (README.md).
    debug_files: bool = True
    # SymCaches on disk ("" = default_dir(): /var/cache/... as root, else $XDG_CACHE_HOME).
    symcache_dir: str = ""
    symcache_max_bytes: int = Field(default=512 << 20, ge=0)  # 0: keep them in memory only
    demangle: bool = True  # C++ (Itanium), Rust legacy and Rust v0 names
    # Per-binary budgets for the ELF symbol tables (every binary a user maps is read as root):
    # bytes read for headers, notes, symbol and string tables; symbol entries walked; seconds
    # spent. Past one, the symbols read so far are used (counted binary_budget_exceeded).
    binary_max_bytes: int = Field(default=64 << 20, ge=4096)
    binary_max_symbols: int = Field(default=1_000_000, ge=1, le=(1 << 32) - 1)
    binary_max_seconds: float = Field(default=2.0, ge=0)
    max_binaries: int = Field(default=256, ge=1)  # loaded ELF files (symbols, DWARF)
    # Bytes the loaded binaries may keep together (symbol and string tables, SymCaches, decl
    # caches, Go tables); least recently used ones go past it, checked after each load and
    # batch. One larger than the whole budget serves its batch, then goes (README.md).
    max_binary_memory: int = Field(default=96 << 20, ge=0)
    max_processes: int = Field(default=4096, ge=1)  # per-process stack caches
    max_stacks_per_process: int = Field(default=20_000, ge=1)
    max_kernel_locations: int = Field(default=100_000, ge=1)
