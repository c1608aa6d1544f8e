"""Driver of bpf/pidns_selftest.bpf.c, run in whatever PID namespace the test puts it in.

``python -m tests.collector.proc.pidns_probe COMM PROGRAM`` loads the program through the
real loader with the defines collector.proc.pidns computes for this process, selects execs of
COMM, runs PROGRAM (a copy of sleep named COMM) itself, and prints one JSON line per step:

1. ``{"step": "inside", "child_pid": <pid as seen here>, "defines": ..., "events": [...]}``
   once its own child's exec was reported;
2. then it reads one line from stdin (meanwhile the test execs COMM from elsewhere, e.g. the
   host) and prints ``{"step": "outside", "events": [...], "counters": [...]}``.

Its children die with it: killed at exit (and, as pid 1 of a new namespace, by the kernel).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time

from collector.bpf import AttachSpec, LoadedProgram, RingBuffer, load
from collector.proc.pidns import pidns_defines

EVENT = struct.Struct("<IIIIII")  # struct pidns_event
FIELDS = ("host_tgid", "host_pid", "ns_tgid", "ns_pid", "inside")
EXEC = AttachSpec("tracepoint", "on_exec", "sched:sched_process_exec")
# Only to turn a lost event into a failure instead of a hang; not a speed expectation.
WAIT_S = 30.0


def comm_key(comm: str) -> bytes:
    raw = comm.encode()[:15]
    return raw + b"\0" * (16 - len(raw))


def collect(ring: RingBuffer, want: int, timeout: float = WAIT_S) -> list[dict[str, int]]:
    """At least ``want`` events (fewer if none come within ``timeout``)."""
    out: list[dict[str, int]] = []

    def on(view: memoryview) -> None:
        out.append(dict(zip(FIELDS, EVENT.unpack(view[: EVENT.size])[:5], strict=True)))

    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        ring.poll(0.2)
        ring.drain(on)
    return out


def counters(prog: LoadedProgram) -> list[int]:
    m = prog.map("counters")
    return [m.percpu_u64_sum(struct.pack("<I", i)) for i in range(2)]


def main(argv: list[str]) -> int:
    comm, program = argv
    defines = pidns_defines()
    children = []
    with load("pidns_selftest", defines, [EXEC]) as prog:
        prog.map("comms").update(comm_key(comm), b"\x01")
        ring = RingBuffer(prog.map("events"))
        try:
            child = subprocess.Popen([program, "60"])
            children.append(child)
            events = collect(ring, 1)
            line = {"step": "inside", "child_pid": child.pid, "defines": defines}
            print(json.dumps({**line, "events": events}), flush=True)
            sys.stdin.readline()  # the test execs COMM elsewhere, then writes a line
            events = collect(ring, 1)
            line = {"step": "outside", "events": events, "counters": counters(prog)}
            print(json.dumps(line), flush=True)
        finally:
            for c in children:
                c.kill()
                c.wait()
            ring.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
