"""One loaded binary: PT_LOAD segments, function symbols, build id, file:line and inlined calls.

Names come from the binary's ``.symtab`` (else ``.dynsym``), or from its separate debug file's
``.symtab`` when that has more (libc6-dbg names libc's internal functions); lines and inlined
calls from the DWARF of the debug file (else of the binary) through a SymCache (lines.py),
kept on disk per build id and file identity (symcache_store.py).

Keyed by the pinned file's identity (dev, inode, size, mtime), so a replaced binary gets a new
entry. It holds no descriptor between reads: symbols are read at load with a dup of the pin,
which is closed after; DWARF (once, for the SymCache) and Go's lazily read inline trees take
a dup again (``_reading``), which reopens a pin the process table parked to stay within the
open-file limit. So the open-file budget is the pins', not one more fd per loaded binary.

Every binary a user maps is read as root, so nothing here may raise into the batch: a binary
that fails to parse keeps ``error`` (its frames become ``binary+0xoffset``), one whose
headers were partly bad keeps ``problems`` and whatever symbols survived, and one over a
budget keeps ``truncated`` with the symbols read in time.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from collector.elf import (
    BudgetExceeded,
    DebugFile,
    ElfError,
    ElfReader,
    Limits,
    NotElf,
    SymbolTable,
    find_debug_file,
    load_function_symbols,
    read_debuglink,
)
from collector.gosym import GoBinary
from collector.model import Function, Line
from collector.proc import PinnedFile
from processors.symbolize.config import SymbolizeConfig
from processors.symbolize.decl_lines import DeclLines, inlined_decls
from processors.symbolize.demangle import demangle
from processors.symbolize.lines import (
    LineTable,
    build_symcache,
    error_name,
    has_dwarf,
    image_base,
    object_refusal,
)
from processors.symbolize.symcache_store import SymCacheStore, cache_key

_MAX_LINES_PER_BINARY = 100_000
# These lines are one per binary already: not subject to the per-template rate limit of
# collector/logs.py, which would show only the first binary a minute.
_ONCE = {"summary": True}
Count = Callable[[str], None]


class Binary:
    __slots__ = (
        "_count",
        "_debug",
        "_debug_elf",
        "_decls",
        "_elf",
        "_functions",
        "_go",
        "_held",
        "_lines",
        "_log",
        "_pinned",
        "_store",
        "_table",
        "_table_loaded",
        "_used",
        "build_id",
        "config",
        "debug_path",
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
        store: SymCacheStore | None = None,
    ) -> None:
        self.config = config
        self.path = pinned.path
        self._functions = functions
        self._count: Count = count or (lambda _name: None)
        self._log = log or logging.getLogger(__name__)
        self._lines: dict[int, tuple[Line, ...]] = {}
        self._store = store
        self._table: LineTable | None = None
        self._table_loaded = False
        self._decls = DeclLines(self.path, self._count, self._log)
        self._debug: DebugFile | None = None
        self._debug_elf: ElfReader | None = None
        self.debug_path = ""
        self._elf: ElfReader | None = None
        self._pinned = pinned
        self.build_id = ""
        self.symbols: SymbolTable | None = None
        self.error = ""  # why no symbols at all could be read
        self.malformed = False  # some bytes failed a check (fatal or not)
        self.problems: tuple[str, ...] = ()
        self.truncated = ""  # which budget cut the symbol table short
        self.source = ""  # .symtab, .dynsym, PT_DYNAMIC or .gopclntab
        self._go: GoBinary | None = None
        self._held = 0  # bytes retained, as of the last retained_bytes()
        self._used = True  # resolved a frame since then (lazy parts may have grown)
        if known_bad:  # failed before (this very file): not read again
            self.error, self.malformed = known_bad, True
            return
        elf = None
        limits = Limits(
            config.binary_max_bytes, config.binary_max_symbols, config.binary_max_seconds
        )
        fd = -1
        try:
            fd = pinned.dup()
            elf = ElfReader(fd, limits)
            self.build_id = elf.build_id()
            loaded = load_function_symbols(elf)
            self.symbols, self.source, self.truncated = (
                loaded.table,
                loaded.source,
                loaded.truncated,
            )
            self._elf = elf
            self._open_go(elf)
            if self._go is None and config.debug_files:
                self._open_debug_file(elf, pinned.path, limits)
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
        if fd >= 0:
            os.close(fd)
        if elf is not None:
            elf.fd = -1  # until _reading hands it a fresh dup
            if elf.problems:
                self.problems = tuple(dict.fromkeys(elf.problems))
                self.malformed = True
        if self.error:
            self.close()

    @contextmanager
    def _reading(self) -> Iterator[bool]:
        """A descriptor for the binary's ELF reader while the block runs (False: the pin was
        parked and could not be reopened as the same file; counted, the block reads nothing)."""
        elf = self._elf
        if elf is None:
            yield False
            return
        try:
            fd = self._pinned.dup()
        except OSError:
            self._count("binary_reopen_failed")
            yield False
            return
        elf.fd = fd
        try:
            yield True
        finally:
            elf.fd = -1
            os.close(fd)

    @contextmanager
    def _fd(self) -> Iterator[int]:
        """The binary's descriptor for the block (-1 when it cannot be reopened)."""
        with self._reading() as readable:
            yield self._elf.fd if readable and self._elf is not None else -1

    @property
    def is_go(self) -> bool:
        """Named from its own .gopclntab (frames are tagged go)."""
        return self._go is not None

    def _open_go(self, elf: ElfReader) -> None:
        """Go binaries are named from .gopclntab, stripped or not: the same names, lines,
        inlined calls and start lines either way (DWARF would differ from the stripped build).
        A Go table that fails its checks costs only that: the ELF symbols stay."""
        try:
            self._go = GoBinary.from_elf(elf)
        except BudgetExceeded:  # a big table, not a bad one: binary_max_bytes bounds it
            self._count("go_tables_budget_exceeded")
            return
        except ElfError as e:  # reported with the binary's other problems, once per file
            elf.problems.append(f"Go tables: {e}")
            self._count("go_tables_malformed")
            return
        if self._go is not None:
            self.source = ".gopclntab"
            self._count("go_binaries")

    def retained_bytes(self) -> int:
        """Bytes this binary keeps alive: its symbol table (arrays and string table), its Go
        line table, its SymCache and its decl-line caches. Recomputed only after frames were
        resolved (the lazy parts grow then), so a symbolizer may ask every batch."""
        if not self._used:
            return self._held
        self._used = False
        n = self.symbols.nbytes() if self.symbols is not None else 0
        go = self._go
        if go is not None:  # the .gopclntab blob and its two sorted arrays
            t = go.table
            n += len(t.blob) + t.entries.itemsize * (len(t.entries) + len(t.funcoffs))
        if self._table is not None:
            n += self._table.nbytes
        n += self._decls.nbytes()
        self._held = n
        return n

    def close(self) -> None:
        self._used = True
        self._table = None
        self._decls.close()
        self._go = None
        if self._debug is not None:
            os.close(self._debug.fd)
            self._debug = self._debug_elf = None
        self._elf = None

    def lines_at(self, file_offset: int) -> tuple[Line, ...]:
        """The frame's lines (inlined first, the symbol's function last); () if unknown."""
        lines = self._lines.get(file_offset)
        if lines is None:
            self._used = True
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

    # ---- separate debug file ------------------------------------------------------------
    def _open_debug_file(self, elf: ElfReader, path: str, limits: Limits) -> None:
        """Find the debug file (collector/elf/debuglink.py) and take its names if it has more.

        Its bytes are parsed with the same budgets as the binary's; any trouble with it costs
        the debug file only (counted debug_file_malformed), never the binary's own names."""
        link = read_debuglink(elf)
        if not self.build_id and link is None:
            return
        try:
            found = find_debug_file(self.build_id, link, path, self.config.dwarf_max_bytes)
        except OSError:
            found = None
        if found is None:
            if link is not None or self.build_id:
                self._count("debug_file_missing")
            return
        try:
            delf = ElfReader(found.fd, limits)
            loaded = load_function_symbols(delf)
        except (ElfError, OSError) as e:
            os.close(found.fd)
            self._count("debug_file_malformed")
            self._log.warning(
                "bad debug file path=%s error=%s (names from the binary)",
                found.path,
                e,
                extra=_ONCE,
            )
            return
        self._debug, self._debug_elf, self.debug_path = found, delf, found.path
        self._count(f"debug_file_{found.how.replace('-', '_')}")
        if self.symbols is None or len(loaded.table) > len(self.symbols):
            self.symbols, self.source = loaded.table, f"{loaded.source} of {found.path}"
            self.truncated = loaded.truncated or self.truncated

    # ---- lines ------------------------------------------------------------------------
    def _resolve(self, file_offset: int) -> tuple[Line, ...]:
        if self._elf is None:
            return ()
        vaddr = self._elf.file_offset_to_vaddr(file_offset)
        if vaddr is None:
            return ()
        if self._go is not None:
            return self._resolve_go(vaddr)
        if self.symbols is None:
            return ()
        hit = self.symbols.lookup(vaddr)
        if hit is None:
            return ()
        name, start = hit
        table = self._line_table() if self.config.dwarf_lines else None
        if table is None:
            return (Line(self._function(name, "", 0)),)
        frames = table.lookup(vaddr)
        head = table.lookup(start)
        fn_file, fn_line = (head[-1][1], head[-1][2]) if head else ("", 0)
        # DW_AT_decl_line/decl_file of the function and of each inlined call (outermost first)
        # where the DWARF has them; else the line of the function's first instruction.
        decls = self._decls.chain(vaddr, self._fd) if frames else ()
        if decls:
            fn_line, fn_file = decls[0][0] or fn_line, decls[0][1] or fn_file
        if not frames:
            return (Line(self._function(name, fn_file, fn_line)),)
        outer_line = frames[-1][2]
        if not self.config.inline:
            return (Line(self._function(name, fn_file or frames[-1][1], fn_line), outer_line),)
        inlined = inlined_decls(decls, len(frames), self._count)
        # Innermost inlined function first, at the address's own line; each enclosing one at
        # the call site of the function it inlined; the symbol's function last.
        out = [
            Line(self._function(sym, d[1] or file, d[0]), ln)
            for (sym, file, ln), d in zip(frames[:-1], inlined, strict=True)
        ]
        out.append(Line(self._function(name, fn_file or frames[-1][1], fn_line), outer_line))
        return tuple(out)

    def _resolve_go(self, vaddr: int) -> tuple[Line, ...]:
        frames = []
        with self._reading() as readable:  # inline trees are read lazily from the file
            if readable and self._go is not None:
                bad = self._go.bad_records
                frames = self._go.frames(vaddr)
                if self._go.bad_records != bad:
                    self._count("go_records_malformed")  # names or lines cut short there
        if not frames:
            return ()
        if not self.config.inline:
            frames = frames[-1:]
        # Lines come from .gopclntab, not DWARF, so dwarf_lines does not turn them off. A
        # frame's file is the one its line is in, i.e. its own function's; Go names are not
        # mangled.
        return tuple(
            Line(self._go_function(f.function, f.file, f.start_line), f.line) for f in frames
        )

    def _go_function(self, name: str, filename: str, start_line: int) -> Function:
        key = (name, name, filename, start_line)
        fn = self._functions.get(key)
        if fn is None:
            fn = self._functions[key] = Function(name, name, filename, start_line)
        return fn

    def _line_table(self) -> LineTable | None:
        if self._table_loaded:
            return self._table
        self._table_loaded = True
        with self._reading() as readable:
            return self._load_line_table() if readable else None

    def _load_line_table(self) -> LineTable | None:
        # The debug file's DWARF when there is one, else the binary's own.
        if self._debug is not None and self._debug_elf is not None and has_dwarf(self._debug_elf):
            elf, identity = self._debug_elf, _identity(self._debug.fd)
        elif self._elf is not None and has_dwarf(self._elf):
            elf, identity = self._elf, self._pinned.identity
        else:
            return None  # no DWARF anywhere: names only, nothing to count
        refusal = object_refusal(elf, self.config.dwarf_max_bytes)
        if refusal:
            self._count("dwarf_skipped")
            self._log.info("DWARF not read path=%s why=%s", self.path, refusal, extra=_ONCE)
            return None
        if self.config.decl_lines:
            cfg = self.config
            from_debug = elf is self._debug_elf
            self._decls.open(elf, from_debug, cfg.dwarf_max_bytes, cfg.decl_max_seconds)
        key = cache_key(self.build_id, identity)
        store = self._store
        t0 = time.perf_counter()
        if store is not None:
            cache, size, corrupt = store.load(key)
            if corrupt:
                self._count("symcache_corrupt")
            if cache is not None:
                self._count("symcache_disk_hits")
                self._table = LineTable(cache, image_base(elf), size)
                return self._table
        # A fresh reader: the binary's own budget went on its symbols.
        try:
            fresh = ElfReader(elf.fd, Limits(max_read_bytes=self.config.dwarf_max_bytes))
            cache, blob = build_symcache(fresh)
        except Exception as e:  # symbolic on hostile bytes: its error class is counted
            self._count(error_name(e))
            self._log.warning(
                "bad DWARF path=%s error=%s: %s (names only for this binary)",
                self.path,
                type(e).__name__,
                str(e).splitlines()[0] if str(e) else "",
                extra=_ONCE,
            )
            return None
        seconds = time.perf_counter() - t0
        self._count("symcache_builds")
        if seconds > self.config.dwarf_max_seconds:
            self._count("dwarf_budget_exceeded")
            self._log.warning(
                "DWARF took longer than its budget path=%s seconds=%.2f (kept; cached on disk)",
                self.path,
                seconds,
                extra=_ONCE,
            )
        if store is not None and store.save(key, blob):
            # Mapped from the file just written, so the built bytes are not kept.
            mapped, size, _corrupt = store.load(key)
            if mapped is not None:
                self._table = LineTable(mapped, image_base(elf), size)
                return self._table
        self._table = LineTable(cache, image_base(elf), len(blob))
        return self._table


def _identity(fd: int) -> tuple[int, int, int, int]:
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
