"""Symbol offsets for uprobes, checked against nm (an independent ELF reader)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from collector.bpf.uprobe import symbol_offsets
from receivers.heap.targets import PROBES, allocator_path

LIBC = Path("/usr/lib/x86_64-linux-gnu/libc.so.6")


@pytest.mark.skipif(not LIBC.exists(), reason="no glibc at the Debian path")
def test_libc_allocator_offsets_match_nm() -> None:
    names = [n for n, _, _ in PROBES]
    got = symbol_offsets(str(LIBC), names)
    out = subprocess.run(
        ["nm", "-D", "--defined-only", str(LIBC)], capture_output=True, text=True, check=True
    ).stdout
    want = {}
    for line in out.splitlines():
        addr, _kind, name = line.split()
        base = name.split("@")[0]
        if base in names:
            want[base] = int(addr, 16)  # libc's text segment: file offset = address
    assert got == want
    assert "malloc" in got and "free" in got


def test_unknown_names_are_absent_and_the_own_process_has_libc() -> None:
    import os

    assert symbol_offsets(str(LIBC), ["no_such_function_here"]) == {}
    path = allocator_path(os.getpid(), "libc.so.6")
    assert path is not None and "/map_files/" in path and os.path.samefile(path, LIBC)
    assert allocator_path(os.getpid(), "libnot-mapped.so.1") is None
