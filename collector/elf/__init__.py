"""Shared ELF reading: build ids (GNU and Go notes), PT_LOAD segments, sections, and compact
function symbol tables. Used by the process table and the symbolizer."""

from collector.elf.reader import (
    PT_LOAD,
    ElfError,
    ElfReader,
    Section,
    Segment,
)
from collector.elf.symbols import SymbolTable

__all__ = ["PT_LOAD", "ElfError", "ElfReader", "Section", "Segment", "SymbolTable"]
