"""Function start lines from DWARF's ``DW_AT_decl_line`` for one binary (collector/dwarf).

symbolic's SymCache keeps each function's name, file and lines but not where it is declared;
pprof's and OTLP's ``Function.start_line`` (which ``go build -pgo`` keys call sites by) want
the declaration. The index is opened on the object the lines come from (the debug file, else
the binary), with its own byte budget (``dwarf_max_bytes``) and time budget
(``decl_max_seconds``), and walks only the compile units of addresses asked about.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager

from collector.dwarf import Decl, DeclIndex
from collector.elf import ElfError, ElfReader, Limits

NO_DECL: Decl = (0, "")


class DeclLines:
    """The decl-line index of one binary's DWARF object, or nothing (``chain`` gives ())."""

    __slots__ = ("_count", "_from_debug", "_index", "_log", "path")

    def __init__(self, path: str, count: Callable[[str], None], log: logging.Logger) -> None:
        self.path, self._count, self._log = path, count, log
        self._index: DeclIndex | None = None
        self._from_debug = False

    def open(self, elf: ElfReader, from_debug: bool, max_bytes: int, max_seconds: float) -> None:
        """``elf`` is the object with the DWARF, its descriptor valid now; a debug file's stays
        open, a binary's is a dup handed in again for each read (``chain``'s ``reading``)."""
        try:
            reader = ElfReader(elf.fd, Limits(max_read_bytes=max_bytes))
        except (ElfError, OSError):
            self._count("decl_open_failed")  # this object's functions keep no decl lines
            return
        self._index = DeclIndex(reader, max_seconds, count=self._count)
        self._from_debug = from_debug
        if not from_debug:
            reader.fd = -1

    def close(self) -> None:
        self._index = None

    def nbytes(self) -> int:
        """Bytes the index holds (collector/dwarf's estimate); 0 when closed."""
        return self._index.nbytes() if self._index is not None else 0

    def chain(
        self, vaddr: int, reading: Callable[[], AbstractContextManager[int]]
    ) -> tuple[Decl, ...]:
        """(line, file) of the function at ``vaddr`` and of each inlined call there, outermost
        first; () when unknown. ``reading`` yields the binary's descriptor (-1: unreadable)."""
        index = self._index
        if index is None:
            return ()
        try:
            if self._from_debug:
                chain = index.chain(vaddr)
            else:
                with reading() as fd:
                    if fd < 0:
                        return ()
                    index.sections.elf.fd = fd
                    try:
                        chain = index.chain(vaddr)
                    finally:
                        index.sections.elf.fd = -1
        except Exception as e:  # a reader bug on hostile bytes costs decl lines, not names
            index.disabled = f"{type(e).__name__}: {e}"
            self._count("decl_failed")
            chain = ()
        if not chain:
            self._count("decl_missing")
        if index.disabled:
            self._log.warning(
                "no more decl lines path=%s why=%s (first-instruction lines from now on)",
                self.path,
                index.disabled,
                extra={"summary": True},
            )
            self._index = None
        return chain


def inlined_decls(decls: tuple[Decl, ...], frames: int, count: Callable[[str], None]) -> list[Decl]:
    """Decls for symbolic's ``frames - 1`` inlined frames (innermost first): both readers walk
    the same DW_TAG_inlined_subroutine tree, so the depths match; when they do not, no guess
    (counted ``decl_inline_mismatch``) and the inlined functions get line 0."""
    if len(decls) == frames:
        return list(decls[:0:-1])
    if decls:
        count("decl_inline_mismatch")
    return [NO_DECL] * (frames - 1)
