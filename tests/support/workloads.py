"""Build the ground-truth C workloads in tests/workloads/ with gcc, cached by content.

``build("cpu_shares")`` compiles tests/workloads/cpu_shares.c into
/tmp/collector-workloads/<hash>/cpu_shares and returns the path; the hash covers the source,
the flags and the gcc version, so a build is redone only when one of them changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

WORKLOADS = Path(__file__).resolve().parent.parent / "workloads"
CACHE = Path(os.environ.get("COLLECTOR_WORKLOAD_CACHE", "/tmp/collector-workloads"))
BASE_FLAGS = ("-O0", "-fno-omit-frame-pointer", "-g")


def _gcc_version(gcc: str) -> str:
    return subprocess.run([gcc, "--version"], capture_output=True, text=True, check=True).stdout


def build(name: str, extra_flags: tuple[str, ...] = ()) -> Path:
    """Path of the compiled workload ``name`` (tests/workloads/<name>.c)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc not found: the ground-truth workloads need it")
    source = WORKLOADS / f"{name}.c"
    flags = (*BASE_FLAGS, *extra_flags)
    digest = hashlib.sha256()
    digest.update(source.read_bytes())
    digest.update("\0".join(flags).encode())
    digest.update(_gcc_version(gcc).encode())
    out_dir = CACHE / digest.hexdigest()[:16]
    binary = out_dir / name
    if binary.exists():
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{name}.{os.getpid()}"
    subprocess.run([gcc, *flags, "-o", str(tmp), str(source)], check=True)
    os.replace(tmp, binary)  # atomic: concurrent test runs never see half a binary
    return binary


def symbol_ranges(binary: Path) -> dict[str, tuple[int, int]]:
    """Function name -> [start, end) from ``nm -S`` (an independent reader of the ELF)."""
    out = subprocess.run(
        ["nm", "-S", "--defined-only", str(binary)], capture_output=True, text=True, check=True
    ).stdout
    ranges: dict[str, tuple[int, int]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tT":
            start, size = int(parts[0], 16), int(parts[1], 16)
            ranges[parts[3]] = (start, start + size)
    return ranges


def run_for_cpu_time(cmd: list[str]) -> float:
    """Run ``cmd`` to completion (it must exit 0); the CPU seconds it used (user + system).

    Time-based workloads burn for a wall-clock duration, so on a busy machine they get less
    CPU. A profiler's sample count follows the CPU they got, so tests expect samples from
    this figure, not from the duration.
    """
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return usage.ru_utime + usage.ru_stime
