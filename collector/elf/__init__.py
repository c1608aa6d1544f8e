"""Shared ELF reading: build ids (GNU and Go notes), PT_LOAD segments, sections, compact
function symbol tables and separate debug files (build id, .gnu_debuglink), all bounded by
the file and by per-binary budgets. Used by the process table and the symbolizer."""

from collector.elf.debuglink import DebugFile, DebugLink, find_debug_file, read_debuglink
from collector.elf.dynamic import SymbolSpan, dynamic_symbols
from collector.elf.functions import LoadedSymbols, load_function_symbols
from collector.elf.reader import (
    PT_LOAD,
    BudgetExceeded,
    ElfError,
    ElfReader,
    Limits,
    NotElf,
    Section,
    Segment,
)
from collector.elf.symbols import SymbolTable

__all__ = [
    "PT_LOAD",
    "BudgetExceeded",
    "DebugFile",
    "DebugLink",
    "ElfError",
    "ElfReader",
    "Limits",
    "LoadedSymbols",
    "NotElf",
    "Section",
    "Segment",
    "SymbolSpan",
    "SymbolTable",
    "dynamic_symbols",
    "find_debug_file",
    "load_function_symbols",
    "read_debuglink",
]
