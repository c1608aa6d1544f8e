"""file:line and inlined frames from DWARF, through Sentry's ``symbolic`` SymCache.

symbolic (Rust, bounds-checked, no unsafe parsing of the input) turns an ELF object into a
SymCache: a compact, sorted index of address ranges -> (function, file, line) including every
inlined call, built once per binary (0.25 s for libc's debug file, see README.md) and then
answering lookups in microseconds. It replaces a pure-Python pyelftools path that needed 8-12 s
and ~400 MB for 200 functions of libpython.

What symbolic is given is still bounded here, because the bytes are the binary author's:
- it gets bytes (``Archive.from_bytes``) read through the pinned descriptor with ``pread``,
  never a path (a target can point a path anywhere) and never an mmap of a file another
  process could truncate (SIGBUS);
- only objects whose section headers passed the hardened reader's checks, no larger than
  ``max_bytes``, with no old-style ``.zdebug_*`` section and no compressed section that
  claims to inflate past 4 x ``max_bytes``;
- every exception it raises is caught and counted by its kind (``dwarf_<kind>``);
  that object then keeps names only.

SymCache addresses are relative to the object's image base (its lowest ``PT_LOAD`` address:
0 for PIE and shared objects, 0x400000 for a classic non-PIE executable).
"""

from __future__ import annotations

import struct

import symbolic
from symbolic import Archive, SymCache

from collector.elf import ElfError, ElfReader
from collector.elf.reader import SHF_COMPRESSED, SHT_NOBITS

# (function name as symbolic gives it, file, line), innermost inlined call first; each outer
# entry at the line of the call into the one before it.
Frame = tuple[str, str, int]
_DEBUG_PREFIXES = (".debug_", ".zdebug_")


def object_refusal(elf: ElfReader, max_bytes: int) -> str:
    """Why this object must not be handed to symbolic ("" when it may be)."""
    if elf.problems:
        return "the ELF headers are malformed"
    if elf.size > max_bytes:
        return f"the file is {elf.size} bytes (dwarf_max_bytes {max_bytes})"
    for sec in elf.section_list:
        if not sec.name.startswith(_DEBUG_PREFIXES) or sec.type == SHT_NOBITS:
            continue
        if sec.name.startswith(".zdebug_"):
            return "old-style .zdebug compression (decompressed without a bound)"
        if sec.offset > elf.size or sec.size > elf.size - sec.offset:
            return f"{sec.name} lies outside the file"
        if sec.flags & SHF_COMPRESSED:
            try:  # Elf64_Chdr: type, reserved, size; Elf32_Chdr: type, size
                hdr = elf.read(sec.offset, 16 if elf.is64 else 8, f"{sec.name} header")
            except ElfError as e:
                return str(e)
            claimed = struct.unpack_from(
                elf.endian + ("Q" if elf.is64 else "I"), hdr, 8 if elf.is64 else 4
            )[0]
            if claimed > 4 * max_bytes:
                return f"{sec.name} inflates to {claimed} bytes"
    return ""


def has_dwarf(elf: ElfReader) -> bool:
    sec = elf.section(".debug_info")
    return sec is not None and sec.type != SHT_NOBITS and sec.size > 0


def image_base(elf: ElfReader) -> int:
    return min((s.vaddr for s in elf.loads), default=0)


def error_name(exc: BaseException) -> str:
    """The counter a symbolic failure is counted under: ``dwarf_`` + the kind of error
    (``SymCacheErrorBadDebugFile`` -> ``dwarf_bad_debug_file``)."""
    name = type(exc).__name__
    if isinstance(exc, symbolic.SymbolicError):
        for prefix in ("SymCacheError", "ObjectError", "DwarfError", "CfiError"):
            if name.startswith(prefix) and len(name) > len(prefix):
                name = name[len(prefix) :]
                break
    elif isinstance(exc, MemoryError):
        name = "Memory"
    elif isinstance(exc, ElfError):
        name = "BadElf"
    else:
        name = "Other"
    return "dwarf_" + "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def build_symcache(elf: ElfReader) -> tuple[SymCache, bytes]:
    """The object's SymCache and its serialized bytes (what the disk cache keeps).

    The caller checked ``object_refusal`` first; symbolic's exceptions propagate."""
    data = elf.read(0, elf.size, "object for symbolic")
    archive = Archive.from_bytes(data)
    objects = list(archive.iter_objects())
    if len(objects) != 1:
        raise ElfError(f"{len(objects)} objects in one ELF file")
    built = SymCache.from_object(objects[0])
    out = bytearray()
    stream = built.open_stream()
    while chunk := stream.read(1 << 20):
        out += chunk
    blob = bytes(out)
    # Re-open from our own bytes: the object's buffer can be freed now.
    return SymCache.from_bytes(blob), blob


class LineTable:
    """Lookups in one object's SymCache (addresses are the binary's link-time ones)."""

    __slots__ = ("base", "cache", "nbytes")

    def __init__(self, cache: SymCache, base: int, nbytes: int) -> None:
        self.cache, self.base, self.nbytes = cache, base, nbytes

    def lookup(self, vaddr: int) -> tuple[Frame, ...]:
        rel = vaddr - self.base
        if rel < 0 or rel >> 64:  # symbolic takes a u64: a wider one raises OverflowError
            return ()
        return tuple(
            (loc.symbol or "", loc.full_path or "", loc.line or 0) for loc in self.cache.lookup(rel)
        )
