"""The collector's own memory: how glibc's malloc is set up, handing freed memory back to the
kernel, and where the resident set goes (for the benchmark and the tests).

Why: a long-running Python process that parses many binaries frees a lot, but by default
glibc keeps much of it. (1) Each thread that mallocs may get its own arena (up to 8 per core),
and a free chunk in one arena cannot serve another thread. (2) glibc raises its mmap threshold
each time a large mmapped block is freed (up to 32 MB), so later multi-MB buffers (ELF tables,
SymCache bytes) land inside an arena, where a single live chunk above them pins the whole
range. (3) Free pages in the middle of an arena stay resident until ``malloc_trim`` hands them
back with madvise. The collector therefore caps arenas, fixes the mmap threshold (which turns
the dynamic raise off), and trims periodically, counted.

``COLLECTOR_MALLOC_TUNING=0`` turns all three off (the benchmark's side-by-side switch).
Nothing here changes what is allocated; on a libc without these calls (musl) it is a no-op.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collector.telemetry import Counters

ENV_SWITCH = "COLLECTOR_MALLOC_TUNING"
# mallopt(3) parameter numbers from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Two arenas: the main one and one more; past the cap glibc hands each new thread one of
# those (threads then share its lock). Whether that costs CPU here was not resolved from the
# noise: one side-by-side run read 7.2 s against 6.6 s with glibc's defaults (README "Memory").
ARENA_MAX = 2
# Blocks from 256 KiB up are mmapped and go back to the kernel the moment they are freed.
MMAP_THRESHOLD = 256 << 10
# Top-of-heap slack kept without trimming (glibc's default is 128 KiB, but fixing the mmap
# threshold also fixes this one, so state it).
TRIM_THRESHOLD = 1 << 20

_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "off", "false", "no")


def _libc() -> ctypes.CDLL | None:
    try:
        # The process's own symbols, libc's among them (find_library would run ldconfig).
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    if not (hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim")):
        return None  # not glibc
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


_LIBC = _libc()


def tune_malloc() -> dict[str, int]:
    """Cap arenas and fix the mmap and trim thresholds; call before any thread starts (arenas
    already made stay). Returns what was set ({} when off or not glibc)."""
    if _LIBC is None or not enabled():
        return {}
    wanted = {
        "arena_max": (_M_ARENA_MAX, ARENA_MAX),
        "mmap_threshold": (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        "trim_threshold": (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
    }
    return {name: value for name, (param, value) in wanted.items() if _LIBC.mallopt(param, value)}


def statm_kb() -> tuple[int, int]:
    """(resident, resident anonymous) of this process in kB, from /proc/self/statm: one read
    of one line, cheap enough to bracket every trim."""
    with open("/proc/self/statm", "rb") as f:
        fields = f.read().split()
    resident, shared = int(fields[1]), int(fields[2])
    return resident * _PAGE_KB, (resident - shared) * _PAGE_KB


@dataclass(frozen=True)
class Trim:
    released_kb: int  # resident memory handed back (the anon part of RSS before - after)
    seconds: float  # time spent in malloc_trim


def trim() -> Trim | None:
    """``malloc_trim(0)``: every free page of every arena back to the kernel. None when off."""
    if _LIBC is None or not enabled():
        return None
    _, before = statm_kb()
    t0 = time.perf_counter()
    _LIBC.malloc_trim(0)
    seconds = time.perf_counter() - t0
    _, after = statm_kb()
    return Trim(max(0, before - after), seconds)


TRIM_INTERVAL = 10.0  # seconds: the windows' default length, so each closed window's tables
COMPONENT = "memory"  # the counters' component in the reports and /metrics


async def trim_loop(counters: Counters, interval: float = TRIM_INTERVAL) -> None:
    """Trim every ``interval`` seconds, counted: ``malloc_trims``, ``malloc_trim_released_kb``
    and ``malloc_trim_us`` (time spent, summed). Runs in the event loop's thread: one trim
    took about 90 us on a 100 MB collector and 8-12 ms on a 350 MB one (README.md, "Memory"),
    about 0.1 % of a core at this interval."""
    if _LIBC is None or not enabled():  # nothing to do, and no counters that read 0
        return
    while True:
        await asyncio.sleep(interval)
        t = trim()
        if t is None:
            return
        counters.add(COMPONENT, "malloc_trims")
        counters.add(COMPONENT, "malloc_trim_released_kb", t.released_kb)
        counters.add(COMPONENT, "malloc_trim_us", round(t.seconds * 1e6))


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
            "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def malloc_stats() -> dict[str, int] | None:
    """glibc's own view in kB (mallinfo2, glibc 2.33+): ``heap`` (obtained from the kernel in
    arenas, all threads), ``in_use`` and ``free`` inside them, ``mmapped`` (blocks of their
    own). ``free`` is what a trim can hand back at most. None when not available."""
    if _LIBC is None or not hasattr(_LIBC, "mallinfo2"):
        return None
    _LIBC.mallinfo2.restype = _Mallinfo2
    mi = _LIBC.mallinfo2()
    return {
        "heap": mi.arena // 1024,
        "in_use": mi.uordblks // 1024,
        "free": mi.fordblks // 1024,
        "mmapped": mi.hblkhd // 1024,
    }


# -- where the resident set goes ------------------------------------------------------------
_ROLLUP_KEYS = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Private_Clean", "Private_Dirty")
_HEADER = re.compile(rb"^[0-9a-f]+-[0-9a-f]+ ")


def rollup(pid: int | str = "self") -> dict[str, int]:
    """kB figures of /proc/PID/smaps_rollup, plus ``Uss`` (private clean + dirty pages)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
        for line in f:
            key, _, rest = line.partition(b":")
            name = key.decode()
            if name in _ROLLUP_KEYS or name == "Anonymous":
                out[name] = int(rest.split()[0])
    out["Uss"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


@dataclass
class Region:
    """One mapped file (all its mappings) or one kind of anonymous memory, in kB."""

    name: str
    rss: int = 0
    pss: int = 0
    anon: int = 0  # private pages of the mapping written or allocated (not file-backed)
    uss: int = 0

    @property
    def file_clean(self) -> int:
        """Resident pages read from the file and not changed: the kernel can drop and re-read
        them at no cost beyond the read, so they weigh less than anonymous memory."""
        return self.rss - self.anon


def regions(pid: int | str = "self") -> list[Region]:
    """Resident memory of ``pid`` by mapped file, largest first; anonymous mappings are
    ``[anon]`` (malloc arenas, mmapped blocks, Python's arenas, thread stacks' touched pages),
    ``[heap]`` (the main arena) and ``[stack]``."""
    by_name: dict[str, Region] = {}
    cur: Region | None = None
    with open(f"/proc/{pid}/smaps", "rb") as f:
        for line in f:
            if _HEADER.match(line):
                parts = line.split(None, 5)
                name = parts[5].strip().decode(errors="replace") if len(parts) > 5 else "[anon]"
                if name.startswith("[anon:"):  # named anonymous mappings (prctl): same kind
                    name = "[anon]"
                cur = by_name.setdefault(name, Region(name))
                continue
            if cur is None:
                continue
            key, _, rest = line.partition(b":")
            if key == b"Rss":
                cur.rss += int(rest.split()[0])
            elif key == b"Pss":
                cur.pss += int(rest.split()[0])
            elif key == b"Anonymous":
                cur.anon += int(rest.split()[0])
            elif key in (b"Private_Clean", b"Private_Dirty"):
                cur.uss += int(rest.split()[0])
    return sorted((r for r in by_name.values() if r.rss), key=lambda r: -r.rss)
