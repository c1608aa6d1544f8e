"""Kernel text symbols from /proc/kallsyms, stored compactly (sorted array + one name blob)."""

from __future__ import annotations

from collector.elf import SymbolTable

KALLSYMS = "/proc/kallsyms"


def load_kallsyms(path: str = KALLSYMS) -> SymbolTable | None:
    """Text symbols (types t/T) of the kernel and modules; None when addresses are hidden
    (kptr_restrict, not root) or the file is unreadable."""
    items: list[tuple[int, str]] = []
    try:
        f = open(path, "rb")  # noqa: SIM115 - read in one pass below
    except OSError:
        return None
    with f:
        for line in f:
            parts = line.split()
            if len(parts) < 3 or parts[1] not in (b"t", b"T"):
                continue
            addr = int(parts[0], 16)
            if addr:
                items.append((addr, parts[2].decode("utf-8", "replace")))
    if not items:
        return None
    return SymbolTable.from_names(items)
