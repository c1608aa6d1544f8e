"""Reading one process from /proc: stat fields, maps, cgroup container id, exe path."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")
# 64-hex container ids as docker (/docker/<id>, docker-<id>.scope), containerd
# (cri-containerd-<id>.scope), cri-o (crio-<id>.scope) and kubepods paths spell them.
_CONTAINER_RE = re.compile(r"(?:^|[/\-:])([0-9a-f]{64})(?:\.scope)?(?:/|$)")


@dataclass(frozen=True, slots=True)
class MapLine:
    start: int
    end: int
    perms: str
    offset: int
    inode: int
    path: str


def boot_time_ns() -> int:
    """Wall-clock time of boot on the clock /proc/<pid>/stat start_time counts from."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def read_stat(pid: int) -> tuple[str, int] | None:
    """(comm, start_time in clock ticks since boot), or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return parse_stat(data)


def parse_stat(data: bytes) -> tuple[str, int] | None:
    """(comm, start_time) from the text of /proc/<pid>/stat; None if it does not parse."""
    # comm may contain spaces and parentheses: it runs from the first "(" to the last ")".
    lp, rp = data.find(b"("), data.rfind(b")")
    if lp < 0 or rp < lp:
        return None
    fields = data[rp + 2 :].split()
    # fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
    if len(fields) < 20 or not fields[19].isdigit():
        return None
    return data[lp + 1 : rp].decode("utf-8", "replace"), int(fields[19])


def read_maps(pid: int, executable_only: bool = True) -> list[MapLine] | None:
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return parse_maps(data, executable_only)


def parse_maps(data: bytes, executable_only: bool = True) -> list[MapLine]:
    """Mappings from the text of /proc/<pid>/maps. The kernel writes it, but the path column
    is any name a user gave a file (spaces, "(deleted)", invalid UTF-8): it is only a label,
    never opened. A line that does not parse is skipped."""
    out = []
    for raw in data.splitlines():
        parts = raw.split(None, 5)
        if len(parts) < 5:
            continue
        perms = parts[1].decode("ascii", "replace")
        if executable_only and "x" not in perms:
            continue
        lo, sep, hi = parts[0].partition(b"-")
        try:
            start, end, offset, inode = int(lo, 16), int(hi, 16), int(parts[2], 16), int(parts[4])
        except ValueError:
            continue
        if not sep or end <= start or min(start, offset, inode) < 0:
            continue
        path = parts[5].decode("utf-8", "replace") if len(parts) > 5 else ""
        out.append(MapLine(start, end, perms, offset, inode, path))
    return out


def read_exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def read_container_id(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            text = f.read()
    except OSError:
        return ""
    return container_id_from_cgroup(text)


def container_id_from_cgroup(text: str) -> str:
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        for seg in path.split("/"):
            m = _CONTAINER_RE.search("/" + seg + "/")
            if m:
                return m.group(1)
    return ""
