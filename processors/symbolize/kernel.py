"""Kernel text symbols from /proc/kallsyms, stored compactly (sorted array + one name blob)."""

from __future__ import annotations

from array import array

from collector.elf import SymbolTable

KALLSYMS = "/proc/kallsyms"
_TEXT = (b"t", b"T")


def load_kallsyms(path: str = KALLSYMS) -> SymbolTable | None:
    """Text symbols (types t/T) of the kernel and modules; None when addresses are hidden
    (kptr_restrict, not root) or the file is unreadable.

    Streams into arrays and one bytearray so the ~120k names never exist as Python strings.
    """
    addrs = array("Q")
    offsets = array("I")
    blob = bytearray()
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError:
        return None
    with f:
        for line in f:
            # "ffffffff81000000 T _stext" or "ffffffffc0a01000 t name\t[module]"
            parts = line.split(None, 3)
            if len(parts) < 3 or parts[1] not in _TEXT or parts[2].startswith(b"__pfx_"):
                continue  # __pfx_* is the call padding before each function: never a frame
            addr = int(parts[0], 16)
            if addr:
                addrs.append(addr)
                offsets.append(len(blob))
                blob += parts[2]
                blob += b"\0"
    if not addrs:
        return None
    return SymbolTable.from_unsorted(addrs, offsets, bytes(blob))
