"""A Go binary's facts for probing: version, the runtime functions' bounds and file offsets,
the goid offset inside runtime.g.

Version and function bounds come from the binary's own tables (collector.gosym: build info
and .gopclntab), so a stripped (``-s -w``) build is probed exactly like an unstripped one.
Every byte is read through collector.elf's bounded reader: the binary is the user's input.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from collector.elf.reader import ElfError, ElfReader
from collector.golang.memrate import disable_flag_address, mem_profile_rate_address
from collector.golang.rets import frame_push, ret_addresses
from collector.gosym import GoBinary, GoSymError, version_tuple

MIN_VERSION = (1, 21)
# runtime.g's goid offset on 64-bit targets, by Go version (the tests check it against the
# DWARF of every toolchain they build with); the first entry whose bound is above wins.
_GOID_OFFSETS = (((1, 23), 152), ((1, 25), 160), ((99, 0), 152))
# g.sched (a gobuf) is at 56 in every supported version; gobuf is {sp, pc, g, ctxt, ret, lr,
# bp} until Go 1.24 and {sp, pc, g, ctxt, lr, bp} from 1.25 (ret removed). Also checked
# against DWARF by the tests.
_G_SCHED = 56
_GOBUF_BP = (((1, 25), 48), ((99, 0), 40))
# Size-specialised malloc entry points (Go 1.26+, the sizespecializedmalloc experiment, on
# by default in 1.27): compiled code calls them instead of mallocgc for small sizes.
MALLOC_SPECIALISED = re.compile(r"^runtime\.mallocgc(?:Tiny|SmallNoScan|SmallScanNoHeader)SC\d+$")
_MALLOC_PREFIXES = ("Tiny", "SmallNoScan", "SmallScanNoHeader")
_SIZE_CLASSES = 68  # Go's small size classes (class 0 is unused)


class NotGo(ValueError):
    """The binary has no Go build info or line table."""


class UnsupportedGo(ValueError):
    """A Go binary of a version (or architecture) the receiver cannot probe."""


@dataclass(frozen=True, slots=True)
class ProbeFunction:
    name: str
    start: int  # link-time virtual address
    size: int
    offset: int  # file offset of ``start`` (where a uprobe goes)


@dataclass(slots=True)
class ProbedBinary:
    path: str
    version: str  # "go1.24.11"
    major_minor: tuple[int, int]
    pie: bool
    goid_offset: int
    sched_offsets: tuple[int, int] = (0, 0)  # g.sched.pc, g.sched.bp
    load_base: int = 0  # link-time address of the first PT_LOAD (page-aligned): a PIE's bias
    # is where the kernel mapped file offset 0 minus this
    functions: dict[str, ProbeFunction] = field(default_factory=dict)
    open_path: str = ""  # what to open for the code (/proc/<pid>/exe), "" = path
    # link-time address of runtime.MemProfileRate (0: unknown), when profilealloc was asked
    # for; memory_profiling: False when the linker disabled it (the runtime then never
    # samples: nothing in the program reads a heap profile), None when that is unknown
    mem_profile_rate: int = 0
    memory_profiling: bool | None = None

    def code(self, fn: ProbeFunction, limit: int | None = None) -> bytes:
        fd = os.open(self.open_path or self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = fn.size if limit is None else min(fn.size, limit)
            return ElfReader(fd).read(fn.offset, size, f"{fn.name} code")
        finally:
            os.close(fd)

    def entry(self, name: str) -> int | None:
        """File offset of function ``name``'s entry probe (its frame push, see rets.py)."""
        fn = self.functions.get(name)
        if fn is None:
            return None
        return fn.offset + (frame_push(self.code(fn, 64), fn.start) - fn.start)

    def returns(self, name: str) -> tuple[int, ...]:
        """File offsets of the RET instructions of function ``name`` (empty if unknown)."""
        fn = self.functions.get(name)
        if fn is None:
            return ()
        rets = ret_addresses(self.code(fn), fn.start)
        if not rets.complete:
            raise UnsupportedGo(f"{name}: undecodable instruction before its end")
        return tuple(fn.offset + (a - fn.start) for a in rets.addresses)


def goid_offset(major_minor: tuple[int, int]) -> int:
    return next(offset for bound, offset in _GOID_OFFSETS if major_minor < bound)


def sched_offsets(major_minor: tuple[int, int]) -> tuple[int, int]:
    """Offsets of g.sched.pc and g.sched.bp in runtime.g."""
    bp = next(offset for bound, offset in _GOBUF_BP if major_minor < bound)
    return _G_SCHED + 8, _G_SCHED + bp


def malloc_entry_names() -> list[str]:
    """Every name a size-specialised malloc entry point may have (most binaries hold few)."""
    return [f"runtime.mallocgc{p}SC{n}" for p in _MALLOC_PREFIXES for n in range(1, _SIZE_CLASSES)]


def _memory_profiling(elf: ElfReader, go: GoBinary, binary: ProbedBinary) -> None:
    """Where MemProfileRate is, and whether the linker disabled memory profiling
    (collector.golang.memrate)."""
    alloc = binary.functions["runtime.profilealloc"]
    code = elf.read(alloc.offset, min(alloc.size, 512), "runtime.profilealloc code")
    binary.mem_profile_rate = mem_profile_rate_address(code, alloc.start) or 0
    bounds = go.function("runtime.schedinit")
    if not binary.mem_profile_rate or bounds is None:
        return
    offset = elf.vaddr_to_file_offset(bounds[0])
    if offset is None:
        return
    code = elf.read(offset, min(bounds[1] - bounds[0], 8192), "runtime.schedinit code")
    flag = disable_flag_address(code, bounds[0], binary.mem_profile_rate)
    if flag is None:
        return
    flag_offset = elf.vaddr_to_file_offset(flag)
    if flag_offset is not None:  # initialised data: the linker wrote it (true, disabled)
        binary.memory_profiling = elf.read(flag_offset, 1, "disableMemoryProfiling") == b"\0"
    elif any(s.vaddr <= flag < s.vaddr + s.memsz for s in elf.loads):  # bss: false
        binary.memory_profiling = True


def read_go_binary(path: str, names: Iterable[str], open_path: str = "") -> ProbedBinary:
    """Version, goid offset and the bounds of ``names`` (plus the size-specialised mallocs
    when ``runtime.mallocgc`` is asked for) of the Go binary at ``path``, opened through
    ``open_path`` when given (/proc/<pid>/exe). NotGo / UnsupportedGo / ElfError say why it
    cannot be probed."""
    wanted = list(dict.fromkeys(names))
    if "runtime.mallocgc" in wanted:
        wanted += malloc_entry_names()
    fd = os.open(open_path or path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        elf = ElfReader(fd)
        if elf.machine != 62 or not elf.is64:  # EM_X86_64
            raise UnsupportedGo("only x86-64 Go binaries are probed")
        try:
            go = GoBinary.from_elf(elf)
        except GoSymError as exc:
            raise UnsupportedGo(f"unreadable Go tables: {exc}") from exc
        if go is None:
            raise NotGo("no Go build info or line table")
        if not go.version:
            raise UnsupportedGo("no Go build info: version unknown")
        mm = version_tuple(go.version)
        if mm < MIN_VERSION:
            raise UnsupportedGo(f"{go.version}: Go 1.21 or later is needed")
        functions = {}
        for name in wanted:
            bounds = go.function(name)
            if bounds is None:
                continue
            start, end = bounds
            offset = elf.vaddr_to_file_offset(start)
            if offset is not None and end > start:
                functions[name] = ProbeFunction(name, start, end - start, offset)
        binary = ProbedBinary(
            path=path,
            version=go.version,
            major_minor=mm,
            pie=elf.type == 3,  # ET_DYN
            goid_offset=goid_offset(mm),
            sched_offsets=sched_offsets(mm),
            load_base=min((seg.vaddr for seg in elf.loads), default=0) & ~0xFFF,
            functions=functions,
            open_path=open_path,
        )
        if "runtime.profilealloc" in functions:
            _memory_profiling(elf, go, binary)
        return binary
    finally:
        os.close(fd)


__all__ = [
    "ElfError",
    "NotGo",
    "ProbeFunction",
    "ProbedBinary",
    "UnsupportedGo",
    "read_go_binary",
]
