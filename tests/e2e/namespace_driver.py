"""Runs a collector and a workload together inside whatever namespaces it was started in.

``unshare --pid --fork --mount-proc python -m tests.e2e.namespace_driver CONFIG PROGRAM ARGS``
starts the real collector CLI (returns once its BPF programs are attached), runs PROGRAM to
completion, stops the collector, and prints one JSON line: the workload's pid as seen in
here, the CPU seconds it got, every thread id that lived in here at the end, the
collector's exit code and its log. As pid 1 of the new namespace it takes its children along
when it exits.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys

from tests.support.collector_run import start_collector


def thread_ids() -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                out.extend(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    return out


def main(argv: list[str]) -> int:
    config, *program = argv
    col = start_collector(config)  # type: ignore[arg-type]
    try:
        proc = subprocess.Popen(program)
        _, status, usage = os.wait4(proc.pid, 0)
        tids = thread_ids()
    finally:
        rc = col.stop()
    line = {
        "pid": proc.pid,
        "workload_rc": os.waitstatus_to_exitcode(status),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "tids": tids,
        "rc": rc,
        "logs": col.logs(),
        "ns": os.readlink("/proc/self/ns/pid"),
    }
    print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
