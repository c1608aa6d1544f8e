"""One loaded binary: PT_LOAD segments, function symbols, build id, and optional DWARF lines.

Keyed by the pinned file's identity (dev, inode, size, mtime), so a replaced binary gets a new
entry. It keeps its own dup of the pinned descriptor, so it stays readable after the process
table releases the process.

Every binary a user maps is read as root, so nothing here may raise into the batch: a binary
that fails to parse keeps ``error`` (its frames become ``binary+0xoffset``), one whose
headers were partly bad keeps ``problems`` and whatever symbols survived, and one over a
budget keeps ``truncated`` with the symbols read in time.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from collector.elf import (
    BudgetExceeded,
    ElfError,
    ElfReader,
    Limits,
    NotElf,
    SymbolTable,
    load_function_symbols,
)
from collector.model import Function, Line
from collector.proc import PinnedFile
from processors.symbolize.config import SymbolizeConfig
from processors.symbolize.demangle import demangle
from processors.symbolize.dwarf import DwarfLines, dwarf_refusal

_MAX_LINES_PER_BINARY = 100_000
# These lines are one per binary already: not subject to the per-template rate limit of
# collector/logs.py, which would show only the first binary a minute.
_ONCE = {"summary": True}
Count = Callable[[str], None]


class Binary:
    __slots__ = (
        "_count",
        "_dwarf",
        "_dwarf_loaded",
        "_dwarf_logged",
        "_dwarf_seconds",
        "_elf",
        "_fd",
        "_functions",
        "_lines",
        "_log",
        "build_id",
        "config",
        "error",
        "malformed",
        "path",
        "problems",
        "source",
        "symbols",
        "truncated",
    )

    def __init__(
        self,
        pinned: PinnedFile,
        functions: dict[tuple[str, str, str, int], Function],
        config: SymbolizeConfig,
        count: Count | None = None,
        log: logging.Logger | None = None,
        known_bad: str = "",
    ) -> None:
        self.config = config
        self.path = pinned.path
        self._functions = functions
        self._count: Count = count or (lambda _name: None)
        self._log = log or logging.getLogger(__name__)
        self._lines: dict[int, tuple[Line, ...]] = {}
        self._dwarf: DwarfLines | None = None
        self._dwarf_loaded = False
        self._dwarf_logged = False
        self._dwarf_seconds = 0.0
        self._elf: ElfReader | None = None
        self._fd = -1
        self.build_id = ""
        self.symbols: SymbolTable | None = None
        self.error = ""  # why no symbols at all could be read
        self.malformed = False  # some bytes failed a check (fatal or not)
        self.problems: tuple[str, ...] = ()
        self.truncated = ""  # which budget cut the symbol table short
        self.source = ""  # .symtab, .dynsym or PT_DYNAMIC
        if known_bad:  # failed before (this very file): not read again
            self.error, self.malformed = known_bad, True
            return
        elf = None
        limits = Limits(
            config.binary_max_bytes, config.binary_max_symbols, config.binary_max_seconds
        )
        try:
            self._fd = pinned.dup()
            elf = ElfReader(self._fd, limits)
            self.build_id = elf.build_id()
            loaded = load_function_symbols(elf)
            self.symbols, self.source, self.truncated = (
                loaded.table,
                loaded.source,
                loaded.truncated,
            )
            self._elf = elf
        except BudgetExceeded as e:
            self.error = self.truncated = str(e)
        except NotElf as e:  # not an attack on the parser, just not a binary
            self.error = str(e)
        except ElfError as e:
            self.error, self.malformed = str(e), True
        except OSError as e:
            self.error = str(e) or type(e).__name__
        except Exception as e:  # a parser bug on hostile bytes costs this binary, not the batch
            self.error, self.malformed = f"{type(e).__name__}: {e}", True
        if elf is not None and elf.problems:
            self.problems = tuple(dict.fromkeys(elf.problems))
            self.malformed = True
        if self.error:
            self.close()

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
            try:
                lines = self._resolve(file_offset)
            except Exception as e:  # never the batch: this binary goes unnamed from now on
                self._log.warning(
                    "binary failed while resolving a frame path=%s error=%s: %s "
                    "(its frames stay as offsets)",
                    self.path,
                    type(e).__name__,
                    e,
                    extra=_ONCE,
                )
                self._count("binary_malformed")
                self.error, self.malformed, self.symbols = f"{type(e).__name__}: {e}", True, None
                self._lines.clear()
                self.close()
                lines = ()
            self._lines[file_offset] = lines
        return lines

    def _function(self, mangled: str, filename: str, start_line: int) -> Function:
        name = demangle(mangled) if self.config.demangle else mangled
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
        dwarf = self._dwarf_for() if self.config.dwarf_lines else None
        if dwarf is None:
            return (Line(self._function(name, "", 0)),)
        t0 = time.perf_counter()
        at = dwarf.lookup(vaddr)
        head = dwarf.lookup(start)
        self._spent(time.perf_counter() - t0)
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

    def _spent(self, seconds: float) -> None:
        """DWARF time of this binary so far; past the budget DWARF is off for it."""
        self._dwarf_seconds += seconds
        if self._dwarf is not None and self._dwarf_seconds > self.config.dwarf_max_seconds:
            self._count("dwarf_budget_exceeded")
            self._log.warning(
                "DWARF over its time budget path=%s seconds=%.2f (names only from now on)",
                self.path,
                self._dwarf_seconds,
                extra=_ONCE,
            )
            self._dwarf.close()
            self._dwarf = None

    def _dwarf_error(self, name: str, exc: BaseException) -> None:
        self._count(name)
        if not self._dwarf_logged:
            self._dwarf_logged = True
            self._log.warning(
                "bad DWARF path=%s error=%s: %s (that unit is skipped; later errors counted as "
                "dwarf_*_error only)",
                self.path,
                type(exc).__name__,
                exc,
                extra=_ONCE,
            )

    def _dwarf_for(self) -> DwarfLines | None:
        if not self._dwarf_loaded:
            self._dwarf_loaded = True
            if self._fd < 0 or self._elf is None:
                return None
            if dwarf_refusal(self._elf, self.config.dwarf_max_bytes):
                self._count("dwarf_skipped")
                return None
            t0 = time.perf_counter()
            try:
                d = DwarfLines(
                    os.dup(self._fd),
                    self.config.inline,
                    self.config.dwarf_max_bytes,
                    self._dwarf_error,
                )
            except OSError:
                return None
            self._dwarf = d if d.available else None
            self._spent(time.perf_counter() - t0)
        return self._dwarf
