"""Whether, and at what rate, a Go program samples its allocations for the heap profile;
found in the runtime's code, so stripped binaries (no data symbols) too.

The go_runtime receiver's alloc signal can probe ``runtime.profilealloc``: the runtime calls
it only for the allocations its own heap profiler samples (one per ``MemProfileRate`` bytes
on average, 512 KiB unless the program changes it), a trap per sample instead of one per
allocation. Two facts decide whether that works and how to scale it:

- ``runtime.MemProfileRate``'s address. ``profilealloc`` loads it to compute the next
  sampling point (``nextSample``, inlined): in Go 1.21 to 1.27 a RIP-relative 8-byte load
  into a register that is compared with 1 a few instructions later (the other RIP-relative
  load there, ``mcache0``, is only tested against nil). BPF reads the rate at each hit: a
  program may change it at any time.
- ``runtime.disableMemoryProfiling``: the linker sets it when nothing in the program can
  read a memory profile (no runtime/pprof, no net/http/pprof), and ``schedinit`` then sets
  ``MemProfileRate = 0``: such a program never calls ``profilealloc``. ``schedinit`` reads it
  as ``cmp byte ptr [rip+Z], 0; je; mov qword ptr [rip+MemProfileRate], 0``; its value is
  the byte the linker wrote at Z in the file.

The tests check both addresses against the symbol table of every toolchain.
"""

from __future__ import annotations

import re

import capstone

_RIP = r"\[rip ([+-]) (0x[0-9a-f]+|\d+)\]"
_RIP_LOAD = re.compile(rf"^(r[a-z0-9]+), qword ptr {_RIP}$")
_BYTE_TEST = re.compile(rf"^byte ptr {_RIP}, 0$")
_ZERO_STORE = re.compile(rf"^qword ptr {_RIP}, 0$")
_WINDOW = 8  # instructions between the load and its compare with 1


def _target(address: int, size: int, m: re.Match[str], group: int) -> int:
    disp = int(m.group(group + 1), 0)
    return address + size + (disp if m.group(group) == "+" else -disp)


def mem_profile_rate_address(code: bytes, start: int) -> int | None:
    """The link-time address of ``runtime.MemProfileRate`` from ``profilealloc``'s code
    (loaded at ``start``), or None when the pattern is not there."""
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    insns = list(md.disasm_lite(code, start))
    for i, (address, size, mnemonic, ops) in enumerate(insns):
        m = _RIP_LOAD.match(ops) if mnemonic == "mov" else None
        if m is None:
            continue
        reg = m.group(1)
        for _a, _s, later, later_ops in insns[i + 1 : i + 1 + _WINDOW]:
            if later == "cmp" and later_ops == f"{reg}, 1":
                return _target(address, size, m, 2)
    return None


def disable_flag_address(code: bytes, start: int, rate_address: int) -> int | None:
    """The link-time address of ``runtime.disableMemoryProfiling`` from ``schedinit``'s code:
    the byte tested right before ``MemProfileRate`` (at ``rate_address``) is zeroed."""
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    insns = list(md.disasm_lite(code, start))
    for i in range(2, len(insns)):
        address, size, mnemonic, ops = insns[i]
        store = _ZERO_STORE.match(ops) if mnemonic == "mov" else None
        if store is None or _target(address, size, store, 1) != rate_address:
            continue
        t_address, t_size, t_mnemonic, t_ops = insns[i - 2]
        test = _BYTE_TEST.match(t_ops) if t_mnemonic == "cmp" else None
        if test is not None and insns[i - 1][2] == "je":
            return _target(t_address, t_size, test, 1)
    return None
