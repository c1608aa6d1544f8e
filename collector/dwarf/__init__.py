"""A small, lazy DWARF reader for one thing symbolic's SymCache does not keep: each function's
declaration line and file (``DW_AT_decl_line``, ``DW_AT_decl_file``), which pprof's and OTLP's
``Function.start_line`` carry and ``go build -pgo`` keys call sites by.

    index = DeclIndex(ElfReader(fd, Limits(max_read_bytes=...)), max_seconds=2.0)
    index.chain(vaddr)  # (line, file) of the function, then of each inlined call in it

Every byte comes through collector/elf's bounded reader; the one error is ``DwarfError``, an
``ElfError`` (``chain`` itself never raises it: it counts and returns ()).
"""

from collector.dwarf.forms import DwarfBudgetExceeded, DwarfError
from collector.dwarf.index import Decl, DeclIndex

__all__ = ["Decl", "DeclIndex", "DwarfBudgetExceeded", "DwarfError"]
