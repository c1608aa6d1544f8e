"""PROCMAP_QUERY against the text of /proc/<pid>/maps, on real processes of this kernel."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from collector.proc import procfs, procmap


@pytest.fixture(autouse=True)
def _query_on() -> Iterator[None]:
    procmap.enable()
    if procmap.executable_vmas(os.getpid()) is None or not procmap.supported():
        pytest.skip("this kernel has no PROCMAP_QUERY (Linux 6.11+): the text path is used")
    yield
    procmap.enable()


def _text(pid: int) -> list[procfs.MapLine] | None:
    try:
        return procfs.parse_maps(procfs.read_file(f"/proc/{pid}/maps"))
    except OSError:
        return None


def test_every_executable_mapping_of_a_python_process_as_the_text_says() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time, ssl; time.sleep(30)"])
    try:
        for _ in range(50):  # until the imports have mapped their libraries
            if len(_text(child.pid) or []) > 8:
                break
            time.sleep(0.05)
        queried, text = procfs.read_maps(child.pid), _text(child.pid)
        assert queried is not None and text is not None
        assert queried == text
        names = [m.path for m in queried]
        assert "[vdso]" in names and any("libc.so" in n for n in names)
        assert all("x" in m.perms and m.end > m.start for m in queried)
    finally:
        child.kill()
        child.wait()


def test_a_deleted_file_mapped_executable_keeps_its_label_and_inode() -> None:
    fd, path = tempfile.mkstemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        os.write(fd, b"\xc3" * mmap.PAGESIZE * 2)
        inode = os.fstat(fd).st_ino
        prot = mmap.PROT_READ | mmap.PROT_EXEC
        region = mmap.mmap(fd, mmap.PAGESIZE, prot=prot, offset=mmap.PAGESIZE)
    finally:
        os.unlink(path)
        os.close(fd)
    try:
        queried = procfs.read_maps(os.getpid())
        assert queried is not None and queried == _text(os.getpid())
        mine = [m for m in queried if m.inode == inode]
        assert len(mine) == 1
        assert mine[0].path == f"{path} (deleted)"
        assert mine[0].offset == mmap.PAGESIZE and mine[0].perms == "r-xs"
    finally:
        region.close()


def test_a_kernel_thread_has_no_mappings_and_a_reaped_process_is_gone() -> None:
    kthreadd = 2 if procfs.is_kernel_thread(2) else None
    if kthreadd is not None:
        assert procfs.read_maps(kthreadd) == [] == _text(kthreadd)
    child = subprocess.Popen(["/bin/true"])
    child.wait()
    assert procfs.read_maps(child.pid) is None and _text(child.pid) is None


def test_a_file_without_the_ioctl_turns_the_query_off_and_the_text_is_read() -> None:
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        with pytest.raises(procmap.Unavailable):
            procmap._query_all(fd)  # ENOTTY, as a kernel before 6.11 answers for maps
    finally:
        os.close(fd)
    assert not procmap.supported()
    text = procfs.read_maps(os.getpid())  # now from the text
    procmap.enable()
    assert text == procfs.read_maps(os.getpid())
