"""Go build info (``.go.buildinfo``): the Go version and the main module's path.

The blob starts with ``"\\xff Go buildinf:"`` at a 16-byte-aligned address; byte 14 is the
pointer size, byte 15 the flags (bit 1: the strings follow inline, Go 1.18+; bit 0: big-endian).
Inline: a uvarint length and the version, then a uvarint length and the module info. Older
binaries hold two pointers to Go string headers instead, read through the PT_LOAD segments.

Found by section name, or (section headers stripped) by searching the first writable PT_LOAD
segments' file bytes for the magic. Every read goes through the ElfReader's bounds and budget;
lengths are capped before anything is allocated.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from collector.elf import ElfError, ElfReader

MAGIC = b"\xff Go buildinf:"
_PF_W = 2
_PF_X = 1
_MAX_VERSION = 64  # "go1.27.3" plus experiments: tens of bytes
_MAX_MODINFO = 64 << 10  # a module list of hundreds of dependencies; more is not build info
_SCAN_CHUNK = 1 << 20
_MAX_SCAN = 32 << 20  # of writable segment bytes searched for the magic when headers are gone


class GoSymError(ElfError):
    """Go tables that fail a check: an ElfError, the only error the ELF parsers raise."""


@dataclass(frozen=True, slots=True)
class BuildInfo:
    version: str  # "go1.21.13"
    module: str  # the main package's import path ("command-line-arguments" for one file)
    module_version: str = ""  # "(devel)" for a local build


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(pos, min(pos + 10, len(data))):
        b = data[i]
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i + 1
        shift += 7
    raise GoSymError("build info: bad uvarint")


def _find_blob(elf: ElfReader) -> int | None:
    """File offset of the build info blob, or None (not a Go binary)."""
    sec = elf.section(".go.buildinfo")
    if sec is not None and sec.size >= 32:
        if elf.read(sec.offset, 14, ".go.buildinfo") == MAGIC:
            return sec.offset
        elf.problems.append(".go.buildinfo section does not start with the magic")
    if elf.section_list and sec is None:
        return None  # section headers are there and name no build info: not Go
    scanned = 0
    for seg in elf.loads:
        if not seg.flags & _PF_W or seg.flags & _PF_X or not seg.filesz:
            continue
        # The magic sits at a 16-byte-aligned address; chunks overlap by the magic's length.
        pos, end = seg.offset, seg.offset + seg.filesz
        while pos < end and scanned < _MAX_SCAN:
            size = min(_SCAN_CHUNK, end - pos)
            chunk = elf.read(pos, size, "segment searched for build info")
            scanned += size
            at = chunk.find(MAGIC)
            while at >= 0:
                if (seg.vaddr + pos - seg.offset + at) % 16 == 0:
                    return pos + at
                at = chunk.find(MAGIC, at + 1)
            if size <= len(MAGIC):
                break
            pos += size - len(MAGIC)
    return None


def _string_at(elf: ElfReader, vaddr: int, ptr: int, order: str, cap: int) -> str:
    """A Go string header (data pointer, length) at ``vaddr``, and its bytes."""
    off = elf.vaddr_to_file_offset(vaddr)
    if off is None:
        raise GoSymError(f"build info: string header at {vaddr:#x} is not in the file")
    fmt = order + ("QQ" if ptr == 8 else "II")
    data, length = struct.unpack(fmt, elf.read(off, 2 * ptr, "build info string"))
    if length > cap:
        raise GoSymError(f"build info: a string of {length} bytes")
    doff = elf.vaddr_to_file_offset(data)
    if doff is None:
        raise GoSymError(f"build info: string data at {data:#x} is not in the file")
    return elf.read(doff, length, "build info string").decode("utf-8", "replace")


def _module(modinfo: str) -> tuple[str, str]:
    path = version = ""
    # Between two 16-byte sentinels: "path\t<pkg>\nmod\t<module>\t<version>\t<sum>\n..."
    for line in modinfo.splitlines()[:4096]:
        fields = line.split("\t")
        if fields[0].endswith("path") and len(fields) > 1 and not path:
            path = fields[1]
        elif fields[0] == "mod" and len(fields) > 2:
            version = fields[2]
    return path, version


def read_build_info(elf: ElfReader) -> BuildInfo | None:
    """The binary's build info, None when it has none; GoSymError when it is malformed."""
    at = _find_blob(elf)
    if at is None:
        return None
    head = elf.read(at, 32, "build info header")
    ptr, flags = head[14], head[15]
    if ptr not in (4, 8):
        raise GoSymError(f"build info: pointer size {ptr}")
    order = ">" if flags & 1 else "<"
    if flags & 2:  # inline strings (Go 1.18+)
        data = elf.read(at + 32, min(_MAX_VERSION + _MAX_MODINFO + 20, elf.size - at - 32), "")
        n, pos = _uvarint(data, 0)
        if n > _MAX_VERSION or pos + n > len(data):
            raise GoSymError(f"build info: a version of {n} bytes")
        version = data[pos : pos + n].decode("utf-8", "replace")
        pos += n
        m, pos = _uvarint(data, pos)
        if m > _MAX_MODINFO or pos + m > len(data):
            raise GoSymError(f"build info: module info of {m} bytes")
        modinfo = data[pos : pos + m].decode("utf-8", "replace")
    else:
        vaddr = elf.file_offset_to_vaddr(at)
        if vaddr is None:
            raise GoSymError("build info is outside every PT_LOAD segment")
        vp, mp = struct.unpack_from(order + ("QQ" if ptr == 8 else "II"), head, 16)
        version = _string_at(elf, vp, ptr, order, _MAX_VERSION)
        modinfo = _string_at(elf, mp, ptr, order, _MAX_MODINFO)
    if not version.startswith("go") or not all(32 < ord(c) < 127 for c in version):
        raise GoSymError(f"build info: version {version[:_MAX_VERSION]!r}")
    path, mod_version = _module(modinfo)
    return BuildInfo(version, path, mod_version)


def version_tuple(version: str) -> tuple[int, int]:
    """(1, 21) from "go1.21.13" (experiments and suffixes ignored); (0, 0) if unknown."""
    digits = version.removeprefix("go").split(" ")[0]
    parts = []
    for p in digits.split(".")[:2]:
        num = ""
        for c in p:
            if not c.isdigit():
                break
            num += c
        parts.append(int(num) if num else 0)
    padded = [*parts, 0, 0]
    return padded[0], padded[1]


__all__ = ["MAGIC", "BuildInfo", "GoSymError", "read_build_info", "version_tuple"]
