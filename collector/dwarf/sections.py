"""The .debug_* sections of one object, read lazily through the hardened ELF reader.

Big sections (.debug_info, .debug_line) are read a unit at a time with ``pread``; the small
tables the units point into (.debug_abbrev, .debug_str, .debug_line_str, .debug_ranges,
.debug_rnglists, .debug_addr, .debug_str_offsets, .debug_aranges) are read whole once. A
compressed section (``SHF_COMPRESSED``, zlib: Debian's debug files) is inflated whole, at most
to its claimed size, and only if that fits the reader's byte budget; every byte read or
inflated counts against that budget (``BudgetExceeded`` past it). zstd is not supported by
this Python and is refused (``DwarfError``).
"""

from __future__ import annotations

import struct
import zlib

from collector.dwarf.forms import DwarfError, cstring_end
from collector.elf import BudgetExceeded, ElfReader, Section
from collector.elf.reader import SHF_COMPRESSED, SHT_NOBITS

_ELFCOMPRESS_ZLIB = 1
_MAX_STRING = 4096


class Sections:
    __slots__ = ("_whole", "elf")

    def __init__(self, elf: ElfReader) -> None:
        self.elf = elf
        self._whole: dict[str, bytes] = {}

    def get(self, name: str) -> Section | None:
        sec = self.elf.section(name)
        if sec is None or sec.type == SHT_NOBITS or sec.size == 0:
            return None
        return sec

    def nbytes(self) -> int:
        """Bytes of the whole sections kept (small tables read whole, inflated sections)."""
        return sum(len(d) for d in self._whole.values())

    def size(self, name: str) -> int:
        sec = self.get(name)
        if sec is None:
            return 0
        return len(self.whole(name)) if sec.flags & SHF_COMPRESSED else sec.size

    def whole(self, name: str) -> bytes:
        data = self._whole.get(name)
        if data is None:
            sec = self.get(name)
            if sec is None:
                data = b""
            elif sec.flags & SHF_COMPRESSED:
                data = self._inflate(sec)
            else:
                data = self.elf.section_data(sec)
            self._whole[name] = data
        return data

    def read(self, name: str, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` of the section (fewer at its end); DwarfError if the
        offset is outside it."""
        sec = self.get(name)
        if sec is None:
            raise DwarfError(f"no {name} section")
        if sec.flags & SHF_COMPRESSED or name in self._whole:
            data = self.whole(name)
            if not 0 <= offset <= len(data):
                raise DwarfError(f"offset {offset:#x} outside {name}")
            return data[offset : offset + size]
        if not 0 <= offset <= sec.size:
            raise DwarfError(f"offset {offset:#x} outside {name}")
        return self.elf.read(sec.offset + offset, min(size, sec.size - offset), name)

    def string(self, name: str, offset: int) -> str:
        data = self.whole(name)
        if not 0 <= offset < len(data):
            raise DwarfError(f"string offset {offset:#x} outside {name}")
        end = cstring_end(data, offset, min(len(data), offset + _MAX_STRING))
        return data[offset:end].decode("utf-8", "replace")

    def _inflate(self, sec: Section) -> bytes:
        elf = self.elf
        hdr_size = 24 if elf.is64 else 12
        raw = elf.section_data(sec)
        if len(raw) < hdr_size:
            raise DwarfError(f"{sec.name}: compression header is truncated")
        if elf.is64:
            kind, _res, size, _align = struct.unpack_from(elf.endian + "IIQQ", raw, 0)
        else:
            kind, size, _align = struct.unpack_from(elf.endian + "III", raw, 0)
        if kind != _ELFCOMPRESS_ZLIB:
            raise DwarfError(f"{sec.name}: compression type {kind} is not supported")
        if size > elf.remaining_budget():
            raise BudgetExceeded(f"{sec.name} inflates to {size:#x} bytes (over the budget)")
        inflater = zlib.decompressobj()
        try:
            data = inflater.decompress(memoryview(raw)[hdr_size:], size)
        except zlib.error as e:
            raise DwarfError(f"{sec.name}: {e}") from e
        if len(data) != size:
            raise DwarfError(f"{sec.name}: inflates to {len(data)} bytes, not {size}")
        elf.bytes_read += size  # what it costs in memory counts like a read
        return data
