"""collector.bpf.probe_site: entry probes move past compare-only instructions, never past
anything that writes a register, memory or the stack (checked on hand-made code and on the
machine's glibc, whose free() starts with a test the kernel would single-step)."""

from __future__ import annotations

import os
from pathlib import Path

from collector.bpf.probe_site import entry_site
from collector.bpf.uprobe import symbol_offsets

TEST_JE = bytes.fromhex("4885ff0f84bf00000055")  # test rdi,rdi; je; push rbp
ENDBR_CMP_MOV = bytes.fromhex("f30f1efa4883ff104889fb")  # endbr64; cmp rdi,16; mov
PUSH_FIRST = bytes.fromhex("415455")  # push r12; push rbp
MOV_FIRST = bytes.fromhex("4889fb4885ff")  # mov rbx,rdi (writes): stays at the entry


def _site(tmp_path: Path, code: bytes, pad: int = 0x40) -> int:
    path = tmp_path / "code.bin"
    path.write_bytes(b"\xcc" * pad + code + b"\xcc" * 32)
    fd = os.open(path, os.O_RDONLY)
    try:
        return entry_site(fd, pad) - pad
    finally:
        os.close(fd)


def test_compare_only_instructions_are_skipped(tmp_path: Path) -> None:
    assert _site(tmp_path, TEST_JE) == 3  # the je: emulated, and every call runs it
    assert _site(tmp_path, ENDBR_CMP_MOV) == 8  # endbr64 and cmp skipped, stop at mov


def test_anything_else_stays_at_the_entry(tmp_path: Path) -> None:
    assert _site(tmp_path, PUSH_FIRST) == 0  # push is emulated already (and moves RSP)
    assert _site(tmp_path, MOV_FIRST) == 0
    assert _site(tmp_path, b"\x06\x06\x06") == 0  # undecodable in 64-bit mode


def test_glibc_free_moves_past_its_test_and_malloc_stays() -> None:
    libc = "/lib/x86_64-linux-gnu/libc.so.6"
    entries = symbol_offsets(libc, ("malloc", "free"))
    sites = symbol_offsets(libc, ("malloc", "free"), entry_sites=True)
    assert sites["malloc"] == entries["malloc"]
    fd = os.open(libc, os.O_RDONLY)
    try:
        first = os.pread(fd, 3, entries["free"])
    finally:
        os.close(fd)
    if first == bytes.fromhex("4885ff"):  # test %rdi,%rdi (Debian 12's glibc)
        assert sites["free"] == entries["free"] + 3
    else:
        assert entries["free"] <= sites["free"] <= entries["free"] + 16
