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


# Before a Go function's frame is pushed, only its stack check runs: cmp (flags), lea into
# the scratch registers r12/r13 (big frames), and the conditional jump to morestack.
_STACK_CHECK = frozenset({"cmp", "lea", "jbe", "jb", "jae", "ja"})
_SCRATCH_DESTS = ("r12,", "r13,")
_PROLOGUE_INSNS = 8


def frame_push(code: bytes, start: int) -> int:
    """Where to put a function's entry uprobe: its ``push rbp`` right after the stack check,
    else ``start``.

    Two reasons. The kernel emulates ``push`` (no single-step of a copied instruction): a hit
    costs about 1.3 µs here instead of about 13 µs at the entry's ``cmp``. And the stack check
    jumps to morestack and re-runs the function from its entry when the stack must grow, so an
    entry probe would fire twice for one call. Arguments, R14 (g) and [RSP] (the return
    address) are as at the entry: the check writes only flags and scratch registers.
    """
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    for i, (address, _size, mnemonic, ops) in enumerate(md.disasm_lite(code, start)):
        if i >= _PROLOGUE_INSNS:
            break
        if mnemonic == "push" and ops == "rbp":
            return address
        if mnemonic not in _STACK_CHECK:
            break
        if mnemonic == "lea" and not ops.startswith(_SCRATCH_DESTS):
            break
    return start
