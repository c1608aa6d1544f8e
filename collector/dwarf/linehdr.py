"""The file table of a .debug_line program header (DWARF 2-5): what ``DW_AT_decl_file``
indexes. Only the header is read, never the line program itself.

Paths are joined the way symbolic joins them for its ``full_path``: an absolute file name as
it is, else the file's directory (relative ones under the unit's ``DW_AT_comp_dir``) / name.
"""

from __future__ import annotations

import posixpath
import struct
from collections.abc import Callable

from collector.dwarf.forms import (
    F_BLOCK,
    F_DATA1,
    F_DATA2,
    F_DATA4,
    F_DATA8,
    F_DATA16,
    F_LINE_STRP,
    F_STRING,
    F_STRP,
    F_UDATA,
    DwarfError,
    cstring_end,
    fixed,
    uleb,
)

_LNCT_PATH, _LNCT_DIRECTORY_INDEX = 1, 2
_MAX_ENTRIES = 1 << 16  # files or directories in one header
_MAX_FORMATS = 16
StrReader = Callable[[int, int], str]  # (form, offset) -> the string in .debug_str/line_str


def parse_file_table(data: bytes, endian: str, comp_dir: str, strs: StrReader) -> list[str]:
    """File paths by DW_AT_decl_file index. ``data`` starts at the header and holds all of it.

    DWARF 5 numbers files from 0 (entry 0 is the unit's primary file); DWARF 2-4 from 1 (0
    means "no file"), so index 0 of the returned list is "" for them."""
    try:
        return _parse(data, endian, comp_dir, strs)
    except (IndexError, struct.error, UnicodeDecodeError) as e:
        raise DwarfError(f"line program header: {type(e).__name__} {e}") from e


def _parse(data: bytes, endian: str, comp_dir: str, strs: StrReader) -> list[str]:
    end = len(data)
    length = fixed(data, 0, 4, end, endian)
    pos, osz = 4, 4
    if length == 0xFFFFFFFF:
        length, pos, osz = fixed(data, 4, 8, end, endian), 12, 8
    version = fixed(data, pos, 2, end, endian)
    pos += 2
    if not 2 <= version <= 5:
        raise DwarfError(f"line table version {version}")
    if version == 5:
        pos += 2  # address size, segment selector size
    header_length = fixed(data, pos, osz, end, endian)
    pos += osz
    end = min(end, pos + header_length)
    pos += 4 if version >= 4 else 3  # min_inst_length, [max_ops], default_is_stmt, line_base
    line_range_and_base = data[pos : pos + 2]
    if len(line_range_and_base) != 2:
        raise DwarfError("line program header is truncated")
    opcode_base = line_range_and_base[1]
    pos += 2 + max(opcode_base - 1, 0)
    if version == 5:
        dirs, pos = _entries(data, pos, end, endian, osz, strs)
        files, pos = _entries(data, pos, end, endian, osz, strs)
        dir_names = [_under(comp_dir, d[0]) for d in dirs]
        return [_join(dir_names, comp_dir, name, di) for name, di in files]
    include = [comp_dir]
    while True:
        nul = cstring_end(data, pos, end)
        if nul == pos:
            pos += 1
            break
        if len(include) > _MAX_ENTRIES:
            raise DwarfError("too many include directories")
        include.append(_under(comp_dir, data[pos:nul].decode("utf-8", "replace")))
        pos = nul + 1
    out = [""]
    while True:
        nul = cstring_end(data, pos, end)
        if nul == pos:
            return out
        if len(out) > _MAX_ENTRIES:
            raise DwarfError("too many file names")
        name = data[pos:nul].decode("utf-8", "replace")
        pos = nul + 1
        di, pos = uleb(data, pos, end)
        _mtime, pos = uleb(data, pos, end)
        _size, pos = uleb(data, pos, end)
        out.append(_join(include, comp_dir, name, di))


def _entries(
    data: bytes, pos: int, end: int, endian: str, osz: int, strs: StrReader
) -> tuple[list[tuple[str, int]], int]:
    """DWARF 5 directory or file entries: (path, directory index) each."""
    nformats = data[pos]
    pos += 1
    if nformats > _MAX_FORMATS:
        raise DwarfError(f"{nformats} entry formats")
    formats = []
    for _ in range(nformats):
        kind, pos = uleb(data, pos, end)
        form, pos = uleb(data, pos, end)
        formats.append((kind, form))
    count, pos = uleb(data, pos, end)
    if count > _MAX_ENTRIES:
        raise DwarfError(f"{count} entries in a line table header")
    out = []
    for _ in range(count):
        path, di = "", 0
        for kind, form in formats:
            if form == F_STRING:
                nul = cstring_end(data, pos, end)
                value: str | int = data[pos:nul].decode("utf-8", "replace")
                pos = nul + 1
            elif form in (F_LINE_STRP, F_STRP):
                value = strs(form, fixed(data, pos, osz, end, endian))
                pos += osz
            elif form == F_UDATA:
                value, pos = uleb(data, pos, end)
            elif form in (F_DATA1, F_DATA2, F_DATA4, F_DATA8):
                n = {F_DATA1: 1, F_DATA2: 2, F_DATA4: 4, F_DATA8: 8}[form]
                value, pos = fixed(data, pos, n, end, endian), pos + n
            elif form == F_DATA16:
                value, pos = 0, pos + 16
            elif form == F_BLOCK:
                n, pos = uleb(data, pos, end)
                value, pos = 0, pos + n
            else:
                raise DwarfError(f"form {form:#x} in a line table header")
            if pos > end:
                raise DwarfError("line table header entry runs past the header")
            if kind == _LNCT_PATH and isinstance(value, str):
                path = value
            elif kind == _LNCT_DIRECTORY_INDEX and isinstance(value, int):
                di = value
        out.append((path, di))
    return out, pos


def _under(comp_dir: str, directory: str) -> str:
    return directory if directory.startswith("/") or not comp_dir else f"{comp_dir}/{directory}"


def _join(dirs: list[str], comp_dir: str, name: str, di: int) -> str:
    if name.startswith("/"):
        return name
    directory = dirs[di] if 0 <= di < len(dirs) else comp_dir
    return posixpath.join(directory, name) if directory else name
