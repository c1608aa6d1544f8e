"""Shared ELF reading: build ids (GNU and Go notes), PT_LOAD segments, sections, and compact
function symbol tables, all bounded by the file and by per-binary budgets. Used by the process
table and the symbolizer."""

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
    "load_function_symbols",
]
