"""``GoBinary``: a Go executable's functions, lines and inlined calls from its own tables.

Needs no symbol table and no DWARF, so a stripped (``-s -w``) build is named as fully as an
unstripped one. Addresses are link-time virtual addresses (the ELF's ``p_vaddr`` space).
Every byte comes through the ElfReader (bounds-checked, budgeted); anything malformed is a
``GoSymError`` (an ``ElfError``) when the binary is opened, and lookups on bad records give
fewer frames, never an exception past ``frames``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import NamedTuple

from collector.elf import ElfError, ElfReader, Limits
from collector.gosym import locate
from collector.gosym.buildinfo import BuildInfo, GoSymError, read_build_info, version_tuple
from collector.gosym.pclntab import FUNCDATA_INL_TREE, PCDATA_INL_TREE_INDEX, FuncRecord, Pclntab

_MAX_INLINE_DEPTH = 64  # the compiler's inlining budget keeps real trees a few levels deep
_MAX_INL_TREE = 1 << 20  # bytes of one function's inlining tree


class GoFunction(NamedTuple):
    name: str
    entry: int
    end: int
    start_line: int  # the line of `func` (Go 1.20+; 0 before)
    file: str


class GoFrame(NamedTuple):
    function: str
    file: str
    line: int
    start_line: int


class GoBinary:
    """Open with ``GoBinary.open(path)`` or ``GoBinary.from_elf(reader)``."""

    def __init__(self, elf: ElfReader, info: BuildInfo | None) -> None:
        self.build_info = info
        self.bad_records = 0  # records a lookup met that did not decode (readers count them)
        self.version = info.version if info is not None else ""
        self.module = info.module if info is not None else ""
        off, size, self.table_addr = locate.find_table(elf)
        blob = elf.read(off, size, "Go line table")
        ver = version_tuple(self.version)
        probe = Pclntab(blob, text_start=None)
        md = None
        if probe.ptr == 8 and probe.order == "<":
            md = locate.find_moduledata(elf, self.table_addr, probe.funcname)
        text = probe.text_start
        if probe.format >= (1, 18) and text == 0:  # Go 1.26+: only moduledata knows it
            text = locate.moduledata_text(md) if md is not None else 0
            text = text or (locate.symbol_address(elf, ("runtime.text",)) or 0)
            sec = elf.section(".text")
            text = text or (sec.addr if sec is not None else 0)
            if not text:
                raise GoSymError("Go line table without a text start, and no moduledata")
        self.table = Pclntab(blob, text_start=text) if text != probe.text_start else probe
        self.format = "{}.{}".format(*self.table.format)
        self.gofunc: int | None = None
        if self.table.format >= (1, 18):
            self.gofunc = locate.symbol_address(elf, ("go:func.*", "go.func.*"))
            if self.gofunc is None and md is not None:
                self.gofunc = locate.moduledata_gofunc(elf, md, ver)
        self._elf: ElfReader | None = elf
        self._own_fd = -1
        self._by_name: dict[str, int] | None = None
        self._inl: dict[int, bytes] = {}

    @classmethod
    def from_elf(cls, elf: ElfReader) -> GoBinary | None:
        """None for a binary that is not Go; GoSymError for a Go binary with bad tables."""
        info = read_build_info(elf)
        if info is None and not any(elf.section(n) for n in locate.SECTIONS):
            # Every Go linker since 1.13 writes build info; without it and without a line
            # table section this is not Go, and no segment is searched for a table.
            return None
        return cls(elf, info)

    @classmethod
    def open(cls, path: str, limits: Limits | None = None) -> GoBinary:
        """Read ``path``'s tables; GoSymError if it is not Go. Keeps a descriptor (inlining
        trees are read on demand) until ``close()`` or the end of a ``with`` block."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            b = cls.from_elf(ElfReader(fd, limits or Limits()))
        except BaseException:
            os.close(fd)
            raise
        if b is None:
            os.close(fd)
            raise GoSymError(f"{path}: not a Go binary (no build info, no .gopclntab)")
        b._own_fd = fd
        return b

    def close(self) -> None:
        if self._own_fd >= 0:
            os.close(self._own_fd)
            self._own_fd = -1
        self._elf = None

    def __enter__(self) -> GoBinary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- functions -------------------------------------------------------------------
    def __len__(self) -> int:
        return self.table.nfunc

    def _function(self, i: int) -> GoFunction:
        t = self.table
        r = t.record(i)
        end = t.entry(i + 1)
        try:
            file = t.file(r.cu_offset, t.value(r.pcfile, r.entry, r.entry))
        except GoSymError:
            self.bad_records += 1
            file = ""
        return GoFunction(t.name(r.name_off), r.entry, end, r.start_line, file)

    def functions(self) -> Iterator[GoFunction]:
        """Every function in address order (bad records are skipped)."""
        for i in range(self.table.nfunc):
            try:
                yield self._function(i)
            except GoSymError:
                self.bad_records += 1
                continue

    def function(self, name: str) -> tuple[int, int] | None:
        """(entry, end) of the function named ``name``: what a uprobe needs in a stripped build."""
        if self._by_name is None:
            t, by = self.table, {}
            for i in range(t.nfunc):
                try:
                    by.setdefault(t.name(t.record(i).name_off), i)
                except GoSymError:
                    self.bad_records += 1
                    continue
            self._by_name = by
        i = self._by_name.get(name)
        return None if i is None else (self.table.entry(i), self.table.entry(i + 1))

    def function_at(self, pc: int) -> GoFunction | None:
        i = self.table.index_of(pc)
        if i is None:
            return None
        try:
            return self._function(i)
        except GoSymError:
            self.bad_records += 1
            return None

    # ---- frames ----------------------------------------------------------------------
    def frames(self, pc: int) -> list[GoFrame]:
        """The frames at ``pc``, innermost (inlined) first and the real function last.

        For a return address pass ``pc - 1`` (the call instruction's line). [] when no
        function holds ``pc`` or its records are bad."""
        t = self.table
        i = t.index_of(pc)
        if i is None:
            return []
        try:
            r = t.record(i)
            name = t.name(r.name_off)
        except GoSymError:
            self.bad_records += 1
            return []
        out: list[GoFrame] = []
        try:
            tree = self._inl_tree(i, r)
            at = pc
            for _ in range(_MAX_INLINE_DEPTH):
                file = t.file(r.cu_offset, t.value(r.pcfile, r.entry, at))
                line = t.value(r.pcln, r.entry, at)
                idx = t.value(t.pcdata_table(r, PCDATA_INL_TREE_INDEX), r.entry, at) if tree else -1
                if idx < 0:
                    out.append(GoFrame(name, file, max(line, 0), r.start_line))
                    return out
                callee, start_line, parent_pc = self._inlined(tree, idx)
                out.append(GoFrame(callee, file, max(line, 0), start_line))
                at = r.entry + parent_pc
        except GoSymError:
            self.bad_records += 1
        # Past the depth cap or on a bad record: what was read, and the function itself.
        out.append(GoFrame(name, "", 0, r.start_line))
        return out

    def _inl_tree(self, i: int, r: FuncRecord) -> bytes:
        t = self.table
        if i in self._inl:
            return self._inl[i]
        tree = b""
        off = t.funcdata_offset(r, FUNCDATA_INL_TREE)
        elf = self._elf
        if off is not None and elf is not None:
            addr = (
                off if t.format < (1, 18) else (None if self.gofunc is None else self.gofunc + off)
            )
            foff = elf.vaddr_to_file_offset(addr) if addr is not None else None
            if foff is not None:
                # The tree's length is not recorded: read what the largest index could need.
                entry = 16 if t.format >= (1, 20) else 20
                count = self._max_index(r) + 1
                size = min(count * entry, _MAX_INL_TREE, elf.size - foff)
                try:
                    tree = elf.read(foff, size, "Go inlining tree") if size > 0 else b""
                except ElfError:
                    tree = b""
        if len(self._inl) > 65536:
            self._inl.clear()
        self._inl[i] = tree
        return tree

    def _max_index(self, r: FuncRecord) -> int:
        """The largest inlining-tree index the function's PCDATA table names."""
        t = self.table
        off = t.pcdata_table(r, PCDATA_INL_TREE_INDEX)
        if not off:
            return -1
        return t.max_value(off, r.entry)

    def _inlined(self, tree: bytes, idx: int) -> tuple[str, int, int]:
        t = self.table
        if t.format >= (1, 20):  # funcID u8, pad[3], nameOff, parentPc, startLine
            at, fmt = idx * 16, t.order + "4xiii"
            if at + 16 > len(tree):
                raise GoSymError("inlining tree index past the tree")
            name_off, parent_pc, start_line = struct.unpack_from(fmt, tree, at)
        else:  # parent i16, funcID u8, pad, file, line, func_, parentPc
            at, fmt = idx * 20, t.order + "4xiiii"
            if at + 20 > len(tree):
                raise GoSymError("inlining tree index past the tree")
            _file, _line, name_off, parent_pc = struct.unpack_from(fmt, tree, at)
            start_line = 0
        if parent_pc < 0:
            raise GoSymError("inlining tree: negative parent pc")
        return t.name(name_off), start_line, parent_pc
