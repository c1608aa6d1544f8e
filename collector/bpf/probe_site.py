"""Where an entry uprobe costs a trap and not a single-step.

The kernel emulates a few x86 instructions at a uprobe (push, jmp/jcc/call, nop) and
single-steps a copy of any other one out of line, which costs about ten times more: on this
2-core VM a probe at glibc's ``free`` (``test %rdi,%rdi``) cost 10.6 µs a call, at the ``je``
that follows it 0.8 µs (malloc starts with ``push %r12``: 0.9 µs). So an entry probe moves
past leading instructions that only compare (``test``, ``cmp``) or do nothing (``endbr64``,
``nop``) to the first other one: every call runs those instructions, and none of them writes
a register, memory or the stack, so the arguments, RSP and [RSP] (the return address a
return probe takes) are as at the entry.
"""

from __future__ import annotations

import os

import capstone

_HARMLESS = frozenset({"test", "cmp", "endbr64", "nop"})
_WINDOW = 32  # bytes read at the entry: a few instructions
_MAX_SKIP = 4  # instructions


def entry_site(fd: int, offset: int) -> int:
    """The file offset to probe for the function at file ``offset`` of the open ``fd``."""
    code = os.pread(fd, _WINDOW, offset)
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    for i, (address, _size, mnemonic, _ops) in enumerate(md.disasm_lite(code, offset)):
        if mnemonic not in _HARMLESS or i >= _MAX_SKIP:
            return address
    return offset  # undecodable or all harmless within the window: the entry itself
