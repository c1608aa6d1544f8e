"""Separate debug files: ``.gnu_debuglink`` parsing and the lookup of a binary's debug file.

Distributions strip binaries and ship their ``.symtab`` and DWARF in a second file (Debian's
``*-dbg`` / ``*-dbgsym`` packages) found either by build id or by the name and CRC32 the
binary records in ``.gnu_debuglink``. Lookup order (gdb's, minus debuginfod: no network):

1. ``/usr/lib/debug/.build-id/<first 2 hex>/<rest>.debug``, used only if that file's own
   build id is the binary's;
2. the ``.gnu_debuglink`` name, CRC32 checked, in ``<binary's dir>/``, then
   ``<binary's dir>/.debug/``, then ``/usr/lib/debug/<binary's dir>/``.

The binary (and so its build id and debuglink) is the target's, and the directory comes from
the path in /proc/PID/maps, which the target can choose. So a candidate is opened with
``O_NOFOLLOW | O_NONBLOCK`` (no symlink at the last step, no FIFO that blocks), must be a
regular file, and the two lookups next to the binary are tried only in a directory that is
root-owned and not writable by group or others, below directories that are the same or
sticky (a user's own directory is never searched as root). The CRC (or build id) must
match, and the file is then parsed like any binary: with the same budgets, by the same
hardened reader.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass

from collector.elf.reader import SHT_NOBITS, ElfError, ElfReader

DEBUG_ROOT = "/usr/lib/debug"
_MAX_LINK_NAME = 255  # one path component
_BUILD_ID_RE = re.compile(r"[0-9a-f]{4,128}")
_CRC_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class DebugLink:
    name: str  # a bare file name (never a path)
    crc: int


@dataclass(frozen=True, slots=True)
class DebugFile:
    fd: int  # owned by the caller
    path: str
    how: str  # "build-id" or "debuglink"


def parse_debuglink(data: bytes, endian: str = "<") -> DebugLink:
    """The section's bytes: a NUL-terminated file name, padding to 4, a CRC32.

    Raises ElfError for anything else: no NUL, a name that is empty, too long, not UTF-8, or
    has a ``/`` (a debuglink names a file, never a path), or no room for the CRC."""
    end = data.find(b"\0", 0, _MAX_LINK_NAME + 1)
    if end <= 0:
        raise ElfError(".gnu_debuglink: no NUL-terminated name of 1-255 bytes")
    crc_at = (end + 4) & ~3
    if crc_at + 4 > len(data):
        raise ElfError(".gnu_debuglink: no room for the CRC after the name")
    try:
        name = data[:end].decode("utf-8")
    except UnicodeDecodeError as e:
        raise ElfError(".gnu_debuglink: name is not UTF-8") from e
    if "/" in name or name in (".", ".."):
        raise ElfError(f".gnu_debuglink: {name!r} is not a plain file name")
    (crc,) = struct.unpack_from(endian + "I", data, crc_at)
    return DebugLink(name, crc)


def read_debuglink(elf: ElfReader) -> DebugLink | None:
    """The binary's ``.gnu_debuglink``, or None (absent, or malformed: noted in problems)."""
    sec = elf.section(".gnu_debuglink")
    if sec is None or sec.type == SHT_NOBITS:
        return None
    try:
        return parse_debuglink(elf.section_data(sec, _MAX_LINK_NAME + 8), elf.endian)
    except ElfError as e:
        elf.problems.append(str(e))
        return None


def file_crc32(fd: int, size: int, max_bytes: int) -> int | None:
    """CRC32 of the file's first ``size`` bytes, or None when it is larger than max_bytes."""
    if size > max_bytes:
        return None
    crc, pos = 0, 0
    while pos < size:
        chunk = os.pread(fd, min(_CRC_CHUNK, size - pos), pos)
        if not chunk:
            return None  # shrank while read
        crc = zlib.crc32(chunk, crc)
        pos += len(chunk)
    return crc


def _open_regular(path: str) -> tuple[int, os.stat_result] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st


def _trusted_dir(path: str) -> bool:
    """Root-owned and not writable by group or others, nor is any directory above it unless
    that one is sticky (as /tmp: others cannot rename or replace what root made in it)."""
    try:
        path = os.path.realpath(path)
        leaf = True
        while True:
            st = os.stat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
                return False
            if st.st_mode & 0o022 and (leaf or not st.st_mode & stat.S_ISVTX):
                return False
            leaf = False
            if path == "/":
                return True
            path = os.path.dirname(path)
    except OSError:
        return False


def build_id_path(build_id: str, root: str = DEBUG_ROOT) -> str | None:
    if not _BUILD_ID_RE.fullmatch(build_id):
        return None  # a Go build id or a forged one: not a file name
    return os.path.join(root, ".build-id", build_id[:2], build_id[2:] + ".debug")


def find_debug_file(
    build_id: str,
    link: DebugLink | None,
    binary_path: str,
    max_bytes: int,
    root: str = DEBUG_ROOT,
) -> DebugFile | None:
    """The binary's separate debug file, opened, in the order of the module docstring."""
    by_id = build_id_path(build_id, root)
    if by_id is not None:
        got = _open_regular(by_id)
        if got is not None:
            fd, _st = got
            if _build_id_of(fd) == build_id:
                return DebugFile(fd, by_id, "build-id")
            os.close(fd)
    if link is None:
        return None
    bdir = os.path.dirname(binary_path) if binary_path.startswith("/") else ""
    candidates = []
    if bdir and _trusted_dir(bdir):
        candidates += [os.path.join(bdir, link.name), os.path.join(bdir, ".debug", link.name)]
    if bdir:
        candidates.append(os.path.join(root, bdir.lstrip("/"), link.name))
    for path in candidates:
        if path == binary_path:
            continue  # a debuglink naming the binary itself
        got = _open_regular(path)
        if got is None:
            continue
        fd, st = got
        try:
            if file_crc32(fd, st.st_size, max_bytes) == link.crc:
                return DebugFile(fd, path, "debuglink")
        except OSError:
            pass
        os.close(fd)
    return None


def _build_id_of(fd: int) -> str:
    try:
        return ElfReader(fd).build_id()
    except (ElfError, OSError):
        return ""
