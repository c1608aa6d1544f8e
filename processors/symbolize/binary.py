"""One loaded binary: PT_LOAD segments, function symbols, build id, and optional DWARF lines.

Keyed by the pinned file's identity (dev, inode, size, mtime), so a replaced binary gets a new
entry. It keeps its own dup of the pinned descriptor, so it stays readable after the process
table releases the process.
"""

from __future__ import annotations

import os

from collector.elf import ElfError, ElfReader, SymbolTable
from collector.model import Function, Line
from collector.proc import PinnedFile
from processors.symbolize.demangle import demangle
from processors.symbolize.dwarf import DwarfLines

_MAX_LINES_PER_BINARY = 100_000


class Binary:
    __slots__ = (
        "_dwarf",
        "_dwarf_loaded",
        "_elf",
        "_fd",
        "_functions",
        "_lines",
        "build_id",
        "dwarf_lines",
        "dwarf_max_bytes",
        "error",
        "inline",
        "path",
        "symbols",
        "use_demangle",
    )

    def __init__(
        self,
        pinned: PinnedFile,
        functions: dict[tuple[str, str, str, int], Function],
        dwarf_lines: bool,
        use_demangle: bool,
        inline: bool = False,
        dwarf_max_bytes: int = 8 << 20,
    ) -> None:
        self.inline = inline
        self.dwarf_max_bytes = dwarf_max_bytes
        self.path = pinned.path
        self.dwarf_lines = dwarf_lines
        self.use_demangle = use_demangle
        self._functions = functions
        self._lines: dict[int, tuple[Line, ...]] = {}
        self._dwarf: DwarfLines | None = None
        self._dwarf_loaded = False
        self._elf: ElfReader | None = None
        self._fd = -1
        self.build_id = ""
        self.symbols: SymbolTable | None = None
        self.error = ""
        try:
            self._fd = pinned.dup()
            self._elf = ElfReader(self._fd)
            self.build_id = self._elf.build_id()
            self.symbols = SymbolTable.from_elf(self._elf)
        except (OSError, ElfError, ValueError) as e:  # struct.error is a ValueError
            self.error = str(e) or type(e).__name__

    def close(self) -> None:
        if self._dwarf is not None:
            self._dwarf.close()
            self._dwarf = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def lines_at(self, file_offset: int) -> tuple[Line, ...]:
        """The frame's lines (inlined first, the symbol's function last); () if unknown."""
        lines = self._lines.get(file_offset)
        if lines is None:
            if len(self._lines) >= _MAX_LINES_PER_BINARY:
                self._lines.clear()
            lines = self._lines[file_offset] = self._resolve(file_offset)
        return lines

    def _function(self, mangled: str, filename: str, start_line: int) -> Function:
        name = demangle(mangled) if self.use_demangle else mangled
        key = (name, mangled, filename, start_line)
        fn = self._functions.get(key)
        if fn is None:
            fn = self._functions[key] = Function(name, mangled, filename, start_line)
        return fn

    def _resolve(self, file_offset: int) -> tuple[Line, ...]:
        if self._elf is None or self.symbols is None:
            return ()
        vaddr = self._elf.file_offset_to_vaddr(file_offset)
        if vaddr is None:
            return ()
        hit = self.symbols.lookup(vaddr)
        if hit is None:
            return ()
        name, start = hit
        dwarf = self._dwarf_for() if self.dwarf_lines else None
        if dwarf is None:
            return (Line(self._function(name, "", 0)),)
        at = dwarf.lookup(vaddr)
        head = dwarf.lookup(start)
        fn_file, fn_line = (head[0], head[1]) if head else ("", 0)
        if at is None:
            return (Line(self._function(name, fn_file, fn_line)),)
        file, line, chain = at
        if not chain:
            return (Line(self._function(name, fn_file, fn_line), line),)
        # Innermost inlined function first, at the address's own line; each enclosing one at
        # the call site of the function it inlined; the symbol's function last.
        out = []
        for iname, ilinkage, call_file, call_line in chain:
            out.append(Line(self._function(ilinkage or iname, file, 0), line))
            file, line = call_file, call_line
        out.append(Line(self._function(name, fn_file, fn_line), line))
        return tuple(out)

    def _dwarf_for(self) -> DwarfLines | None:
        if not self._dwarf_loaded:
            self._dwarf_loaded = True
            if (
                self._fd >= 0
                and self._elf is not None
                and self._dwarf_size() <= self.dwarf_max_bytes
            ):
                try:
                    d = DwarfLines(os.dup(self._fd), self.inline)
                except OSError:
                    return None
                self._dwarf = d if d.available else None
        return self._dwarf

    def _dwarf_size(self) -> int:
        assert self._elf is not None
        return sum(
            s.size
            for n in (".debug_info", ".debug_line")
            if (s := self._elf.section(n)) is not None
        )
