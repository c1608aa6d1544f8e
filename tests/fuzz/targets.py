"""Fuzz targets: every parser of bytes a user of the profiled host controls.

Each target takes one input and returns normally, or lets an exception escape: that is a bug.
The parsers' only allowed failure is ``ElfError`` (the ELF reader's "malformed"); symbolic's
SymCache may also refuse an object with its own ``SymbolicError``; the symbolizer's Binary,
the /proc parsers and the demanglers must not raise at all. Inputs reach the ELF code as a
real file (a memfd), the way a pinned binary does.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable

from symbolic import SymbolicError

from collector.dwarf import DeclIndex
from collector.elf import ElfError, ElfReader, Limits, dynamic_symbols, load_function_symbols
from collector.elf.debuglink import parse_debuglink, read_debuglink
from collector.gosym import GoBinary
from collector.gosym.cfi import write_cfi
from collector.proc import PinnedFile
from collector.proc.procfs import container_id_from_cgroup, parse_maps, parse_stat
from collector.unwind.breakpad import CfiError, build_rows
from collector.unwind.table import TableError, build_table
from processors.symbolize.binary import Binary
from processors.symbolize.config import SymbolizeConfig
from processors.symbolize.demangle import demangle
from processors.symbolize.lines import LineTable, build_symcache, image_base, object_refusal

# Small budgets keep executions fast and make the budget paths part of what is fuzzed.
LIMITS = Limits(max_read_bytes=4 << 20, max_symbols=4096, max_seconds=10.0)
DWARF_BYTES = 2 << 20
_CONFIG = SymbolizeConfig(
    dwarf_lines=True,
    inline=True,
    dwarf_max_bytes=DWARF_BYTES,
    binary_max_bytes=LIMITS.max_read_bytes,
    binary_max_symbols=LIMITS.max_symbols,
)
_fd = -1


def _file(data: bytes) -> int:
    """One memfd per process, rewritten for each input: a regular file, as a binary is."""
    global _fd
    if _fd < 0:
        _fd = os.memfd_create("fuzz-input", os.MFD_CLOEXEC)
    os.ftruncate(_fd, 0)
    os.pwrite(_fd, data, 0)
    return _fd


def _reader(data: bytes) -> ElfReader | None:
    try:
        return ElfReader(_file(data), LIMITS)
    except ElfError:
        return None


def elf_reader(data: bytes) -> None:
    elf = _reader(data)
    if elf is None:
        return
    try:
        elf.build_id()
    except ElfError:
        return
    for sec in elf.section_list[:64]:
        elf.file_offset_to_vaddr(sec.offset)
        elf.vaddr_to_file_offset(sec.addr)
        with contextlib.suppress(ElfError):
            elf.section_data(sec, 4096)


def _probe(table) -> None:  # type: ignore[no-untyped-def]
    n = len(table)
    for i in range(0, n, max(1, n // 16)):
        start = table.starts[i]
        table.lookup(start)
        table.lookup(start + 1)
        table.name_at(i)


def elf_symbols(data: bytes) -> None:
    elf = _reader(data)
    if elf is None:
        return
    try:
        _probe(load_function_symbols(elf).table)
    except ElfError:
        return


def elf_dynamic(data: bytes) -> None:
    """The PT_DYNAMIC path alone, as when the section headers are unusable."""
    elf = _reader(data)
    if elf is None:
        return
    try:
        dynamic_symbols(elf)
        elf.section_list = []
        _probe(load_function_symbols(elf).table)
    except ElfError:
        return


def dwarf_lines(data: bytes) -> None:
    """A hostile ELF through symbolic's SymCache: its SymbolicError (or ElfError) is the only
    failure; lookups of every symbol must not raise at all."""
    elf = _reader(data)
    if elf is None or object_refusal(elf, DWARF_BYTES):
        return
    try:
        table = load_function_symbols(elf).table
        cache, _blob = build_symcache(ElfReader(elf.fd, Limits(max_read_bytes=DWARF_BYTES)))
    except (ElfError, SymbolicError):
        return
    lines = LineTable(cache, image_base(elf), len(_blob))
    n = len(table)
    for i in range(0, n, max(1, n // 8)):
        # a symbol can sit at the top of the address space: start + 4 is then past 2^64
        for addr in (table.starts[i], table.starts[i] + 4):
            lines.lookup(addr)


def dwarf_decls(data: bytes) -> None:
    """collector/dwarf's decl-line reader on a hostile ELF: ``chain`` must not raise at all
    (a DwarfError is counted and gives ()), whatever the units, abbreviations, forms, range
    lists, line headers or compressed sections say."""
    elf = _reader(data)
    if elf is None:
        return
    try:
        table = load_function_symbols(elf).table
        index = DeclIndex(ElfReader(elf.fd, Limits(max_read_bytes=DWARF_BYTES)), max_seconds=5.0)
    except ElfError:
        return
    n = len(table)
    for i in range(0, n, max(1, n // 16)):
        index.chain(table.starts[i])
        index.chain(table.starts[i] + 5)
    index.chain(0)
    index.chain(1 << 63)


def gnu_debuglink(data: bytes) -> None:
    """.gnu_debuglink bytes alone, and inside an ELF: ElfError is the only failure."""
    with contextlib.suppress(ElfError):
        parse_debuglink(data)
    elf = _reader(data)
    if elf is not None:
        with contextlib.suppress(ElfError):
            read_debuglink(elf)


def symbolize_binary(data: bytes) -> None:
    """The symbolizer's whole per-binary path (symbols, DWARF, demangling): never raises."""
    fd = _file(data)
    pinned = PinnedFile(os.dup(fd), os.fstat(fd), "fuzz")
    try:
        b = Binary(pinned, {}, _CONFIG)
        for off in range(0, min(len(data), 1 << 16), 997):
            b.lines_at(off)
        b.close()
    finally:
        pinned.close()


def proc_maps(data: bytes) -> None:
    parse_maps(data)
    parse_maps(data, executable_only=False)


def proc_stat(data: bytes) -> None:
    parse_stat(data)


def proc_cgroup(data: bytes) -> None:
    container_id_from_cgroup(data.decode("utf-8", "replace"))


def symbol_names(data: bytes) -> None:
    """Names from a hostile string table through every demangler (C++ via libstdc++)."""
    demangle.__wrapped__(data.decode("utf-8", "replace"))  # bypass the LRU: fuzz every input


def unwind_cfi_text(data: bytes) -> None:
    """Breakpad STACK CFI text -> unwind rows: CfiError is its only failure."""
    try:
        build_rows(data, max_rows=200_000, max_lines=400_000)
    except CfiError:
        return


def unwind_table(data: bytes) -> None:
    """A hostile ELF through symbolic and the row builder: TableError is the only failure."""
    try:
        build_table(_file(data), "fuzz", max_rows=200_000)
    except TableError:
        return


def go_tables(data: bytes) -> None:
    """Go build info, .gopclntab, inlining trees and the CFI rows made from them, on a hostile
    ELF: ElfError (GoSymError) is the only failure, and only when the binary is opened."""
    elf = _reader(data)
    if elf is None:
        return
    try:
        go = GoBinary.from_elf(elf)
    except ElfError:
        return
    if go is None:
        return
    n = len(go)
    for i, fn in enumerate(go.functions()):
        if i % max(1, n // 64) == 0:
            go.frames(fn.entry)
            go.frames(fn.end - 1)
            go.frames((fn.entry + fn.end) // 2)
            go.function(fn.name)
    go.frames(0)
    go.function_at(1 << 63)
    write_cfi(go, 0, io.BytesIO())


TARGETS: dict[str, Callable[[bytes], None]] = {
    "elf_reader": elf_reader,
    "elf_symbols": elf_symbols,
    "elf_dynamic": elf_dynamic,
    "dwarf_lines": dwarf_lines,
    "dwarf_decls": dwarf_decls,
    "gnu_debuglink": gnu_debuglink,
    "symbolize_binary": symbolize_binary,
    "proc_maps": proc_maps,
    "proc_stat": proc_stat,
    "proc_cgroup": proc_cgroup,
    "symbol_names": symbol_names,
    "unwind_cfi_text": unwind_cfi_text,
    "unwind_table": unwind_table,
    "go_tables": go_tables,
}
ELF_TARGETS = (
    "elf_reader",
    "elf_symbols",
    "elf_dynamic",
    "dwarf_lines",
    "dwarf_decls",
    "gnu_debuglink",
    "symbolize_binary",
    "unwind_table",
    "go_tables",
)
