"""What /proc says a process has used so far, for the benchmarks that measure a profiler
beside its workload: CPU seconds and memory figures."""

from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (fields 14 and 15 of /proc/PID/stat)."""
    # The command name may hold spaces and parentheses: the fields start after the last ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kb(pid: int, key: str) -> int:
    """A kB figure of /proc/PID/status (``VmRSS``, ``VmHWM``); 0 when the line is missing."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of ``pid`` (the reader, the unwind worker, ...); threads
    that already ended are only in the process's total (``cpu_seconds``)."""
    out: dict[str, float] = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        f = text.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(f[11]) + int(f[12])) / TICK
    return out
