"""Where a function returns: the addresses of its RET instructions, by disassembly.

A uretprobe rewrites the return address on the stack; Go copies goroutine stacks and would
then find a return address it does not know ("unknown caller pc", a crash). So a return is
seen with plain uprobes at each RET. The function is decoded linearly from its entry with
capstone (Go emits no data inside functions; the int3 padding after the last instruction
decodes as instructions, never as a RET). A byte capstone cannot decode stops the walk: the
addresses found before it are certain, what follows is not guessed, and the caller is told.
"""

from __future__ import annotations

from dataclasses import dataclass

import capstone


@dataclass(frozen=True, slots=True)
class Returns:
    addresses: tuple[int, ...]  # of each RET, in the function's (link-time) address space
    complete: bool  # False: an undecodable byte stopped the walk before the function's end


def ret_addresses(code: bytes, start: int) -> Returns:
    """RET instructions of the x86-64 function whose bytes are ``code``, loaded at ``start``."""
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    found = []
    end = start
    for insn in md.disasm_lite(code, start):
        address, size, mnemonic, _ops = insn
        end = address + size
        if mnemonic in ("ret", "retq"):
            found.append(address)
    return Returns(tuple(found), end >= start + len(code))
