"""Malformed copies of a real binary, made by patching bytes the kernel never looks at.

A program only needs its ELF header, program headers and loaded segments to run; everything
else (section headers, symbol and string tables, notes) is whatever its author wrote. Each
kind below is a copy that still runs but lies about one of those. Sections are located with
pyelftools, a reader independent of the one under test.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

from elftools.elf.elffile import ELFFile

TIB = 1 << 40

# kind -> what it does; every kind leaves PT_DYNAMIC (and so .dynsym) intact.
KINDS = {
    "symtab1t": ".symtab claims a size of 1 TiB",
    "strtabeof": "the string table of .symtab starts past the end of the file",
    "shdreof": "the section header table starts past the end of the file",
    "selflink": ".symtab names itself as its string table",
    "shdrjunk": "every section header is garbage",
}

_SH_OFFSET, _SH_SIZE, _SH_LINK = 24, 32, 40  # field offsets in an Elf64_Shdr


def _shdr(path: Path, name: str) -> tuple[int, int]:
    """(file offset of the section header of ``name``, its index)."""
    with path.open("rb") as f:
        elf = ELFFile(f)
        assert elf.elfclass == 64 and elf.little_endian, "64-bit little-endian binaries only"
        shoff, shentsize = elf["e_shoff"], elf["e_shentsize"]
        for i, sec in enumerate(elf.iter_sections()):
            if sec.name == name:
                return shoff + i * shentsize, i
    raise KeyError(name)


def _patch(path: Path, offset: int, fmt: str, *values: int) -> None:
    with path.open("r+b") as f:
        f.seek(offset)
        f.write(struct.pack("<" + fmt, *values))


def make(src: Path, dst: Path, kind: str) -> Path:
    """A copy of ``src`` at ``dst`` malformed as ``kind`` (one of KINDS)."""
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o755)
    size = dst.stat().st_size
    symtab, symtab_index = _shdr(dst, ".symtab")
    if kind == "symtab1t":
        _patch(dst, symtab + _SH_SIZE, "Q", TIB)
    elif kind == "strtabeof":
        strtab, _ = _shdr(dst, ".strtab")
        _patch(dst, strtab + _SH_OFFSET, "Q", size + 0x1000)
    elif kind == "shdreof":
        _patch(dst, 0x28, "Q", size + 0x1000)  # e_shoff
    elif kind == "selflink":
        _patch(dst, symtab + _SH_LINK, "I", symtab_index)
    elif kind == "shdrjunk":
        with dst.open("rb") as f:
            (shoff,) = struct.unpack_from("<Q", f.read(64), 0x28)
            f.seek(0x3A)
            shentsize, shnum = struct.unpack("<HH", f.read(4))
        with dst.open("r+b") as f:
            f.seek(shoff)
            f.write(b"\xa5" * (shentsize * shnum))
    else:
        raise KeyError(kind)
    return dst


def synthetic(path: Path, nsyms: int) -> dict[str, int]:
    """A valid 64-bit ELF with ``nsyms`` function symbols ``f<i>`` of 16 bytes each in one
    PT_LOAD, for budgets that only a huge binary reaches (readelf and nm read it too).
    Returns a few names -> addresses as ground truth."""
    base, text_off = 0x400000, 0x1000
    text_size = 16 * nsyms
    names = b"".join(b"f%d\0" % i for i in range(nsyms))
    strtab = b"\0" + names
    syms = bytearray(24 * (nsyms + 1))
    pos = 1
    for i in range(nsyms):
        value = base + text_off + 16 * i
        # st_name, st_info (GLOBAL FUNC), st_other, st_shndx (.text is 1), st_value, st_size
        struct.pack_into("<IBBHQQ", syms, 24 * (i + 1), pos, 0x12, 0, 1, value, 16)
        pos += len(b"%d" % i) + 2
    shstrtab = b"\0.text\0.symtab\0.strtab\0.shstrtab\0"
    symoff = text_off + text_size
    stroff = symoff + len(syms)
    shstroff = stroff + len(strtab)
    shoff = (shstroff + len(shstrtab) + 7) & ~7
    ehdr = struct.pack(
        "<4sBBBBB7xHHIQQQIHHHHHH",
        b"\x7fELF",
        2,
        1,
        1,
        0,
        0,  # 64-bit, little-endian, version 1, SysV
        2,
        62,
        1,
        base + text_off,
        64,
        shoff,
        0,
        64,
        56,
        1,
        64,
        5,
        4,  # EXEC, x86-64
    )
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, symoff, symoff, 0x1000)  # PT_LOAD R+X
    shdrs = b"".join(
        struct.pack("<IIQQQQIIQQ", *h)
        for h in (
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
            (1, 1, 6, base + text_off, text_off, text_size, 0, 0, 16, 0),  # .text PROGBITS AX
            (7, 2, 0, 0, symoff, len(syms), 3, 1, 8, 24),  # .symtab -> .strtab
            (15, 3, 0, 0, stroff, len(strtab), 0, 0, 1, 0),  # .strtab
            (23, 3, 0, 0, shstroff, len(shstrtab), 0, 0, 1, 0),  # .shstrtab
        )
    )
    with path.open("wb") as f:
        f.write(ehdr + phdr)
        f.seek(text_off)
        f.write(b"\xc3" * text_size)  # ret
        f.write(syms)
        f.write(strtab)
        f.write(shstrtab)
        f.seek(shoff)
        f.write(shdrs)
    first, last = 0, nsyms - 1
    return {f"f{i}": base + text_off + 16 * i for i in (first, nsyms // 2, last)}
