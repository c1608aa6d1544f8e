"""Call-frame rules of a Go binary from its own ``.gopclntab``, as Breakpad ``STACK CFI`` text.

Go writes its frame layout into the line table (the ``pcsp`` table: how far SP is below the
entry SP at each pc), so a stripped build (``-s -w``, no .debug_frame, and Go never writes
.eh_frame) can be unwound from it as well as an unstripped one: CFA = RSP + 8 + pcsp, the
return address at CFA - 8, RBP left as it is (Go's own .debug_frame says the same). That
matters because frame-pointer walking skips the caller of every frameless Go leaf (a small
method, a loop with no calls): the return address is at [RSP], not behind RBP.

The text has symbolic's shape (addresses relative to the lowest PT_LOAD address) so
collector/unwind/breakpad.py turns it into rows like any other binary's.
"""

from __future__ import annotations

from typing import BinaryIO

from collector.elf import ElfError, ElfReader
from collector.gosym.binary import GoBinary
from collector.gosym.buildinfo import GoSymError

_EM_X86_64 = 62


def write_cfi(go: GoBinary, base: int, out: BinaryIO) -> int:
    """Write every function's rows; returns the number of functions written."""
    t = go.table
    written = 0
    for i in range(t.nfunc):
        try:
            r = t.record(i)
            end = t.entry(i + 1)
            rows = t.ranges(r.pcsp, r.entry, end)
        except GoSymError:
            continue  # this function is left without rows: the walker stops there
        if not rows or r.entry < base or end <= r.entry:
            continue
        lines = []
        for k, (pc, sp) in enumerate(rows):
            if sp < -8 or sp % 8:  # -8: past a pop of the return address (vfork's trick)
                break  # not a frame layout the walker can use: rows up to here
            if k == 0:
                lines.append(
                    f"STACK CFI INIT {pc - base:x} {end - r.entry:x} "
                    f".cfa: $rsp {sp + 8} + .ra: .cfa -8 + ^\n"
                )
            else:
                lines.append(f"STACK CFI {pc - base:x} .cfa: $rsp {sp + 8} +\n")
        if lines:
            out.write("".join(lines).encode())
            written += 1
    return written


def go_cfi_text(fd: int, out: BinaryIO) -> bool:
    """Write the Go binary's rows to ``out``; False (nothing written) when it is not an x86-64
    Go binary or its tables fail their checks (the caller then asks symbolic)."""
    try:
        elf = ElfReader(fd)
        if elf.machine != _EM_X86_64:
            return False
        go = GoBinary.from_elf(elf)
        if go is None or go.table.ptr != 8:
            return False
        base = min((s.vaddr for s in elf.loads), default=0)
        return write_cfi(go, base, out) > 0
    except ElfError:
        return False
