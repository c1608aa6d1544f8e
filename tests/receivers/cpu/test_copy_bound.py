"""Stack copies are bounded in BPF (bpf/unwind.h unwind_copy_flow): with nobody reading the
ring, the copies sent never exceed their quarter of it, the rest is refused and counted, and
the ring keeps room for samples without copies; a pause from user space stops them all.

The real cpu program at 999 Hz on every CPU while new processes spin, the ring never drained:
the ground truth is what the ring holds afterwards, read record by record.
"""

from __future__ import annotations

import struct
import subprocess
import time

import pytest

from collector.bpf import AttachSpec, LoadedProgram, RingBuffer, load
from collector.bpf.events import EVENT, F_STACK_COPY
from collector.proc.pidns import pidns_defines
from receivers.cpu.config import CpuConfig

pytestmark = pytest.mark.bpf

PAGES = 64  # a 256 KB ring: its quarter holds five 10 KB copies
FLOW = struct.Struct("<QQQQ")  # sent, read, pause, bounded


def _load() -> LoadedProgram:
    cfg = CpuConfig(unwind="auto", ringbuf_pages=PAGES, frequency=999)
    defines = {
        **cfg.common_defines(),
        **cfg.stack_copy_defines(),
        **pidns_defines(),
        "STACK_MAP_SIZE": 64,
        "SPILL_MAP_SIZE": 64,
    }
    assert defines["UNWIND_STACK_COPY"] == 8192  # the default
    return load(
        "cpu",
        defines,
        [
            AttachSpec("perf_event", "on_sample", "cpu-clock", sample_freq=999),
            AttachSpec("tracepoint", "on_exec", "sched:sched_process_exec"),
        ],
    )


def _spin(processes: int) -> None:
    """New processes that each spin 30 ms: every one's first sample asks for a copy."""
    for _ in range(processes):
        subprocess.run(["timeout", "0.03", "sh", "-c", "while :; do :; done"], check=False)


def _flow(prog: LoadedProgram) -> tuple[int, int, int, int]:
    raw = prog.map("unwind_copy_flow").lookup(b"\0\0\0\0")
    assert raw is not None
    return FLOW.unpack(raw)


def _records(prog: LoadedProgram) -> tuple[int, int, int]:
    """Copy records, their bytes, and the other samples the ring holds."""
    ring = RingBuffer(prog.map("events"))
    got = [0, 0, 0]

    def on(view: memoryview) -> None:
        flags = EVENT.unpack_from(view)[3]
        if flags & F_STACK_COPY:
            got[0] += 1
            got[1] += len(view)
        else:
            got[2] += 1

    try:
        ring.drain(on)
    finally:
        ring.close()
    return got[0], got[1], got[2]


def test_copies_take_at_most_a_quarter_of_an_unread_ring() -> None:
    with _load() as prog:
        _spin(40)
        time.sleep(0.1)
        prog.detach()
        sent, read, pause, bounded = _flow(prog)
        copies, copy_bytes, others = _records(prog)
    quarter = PAGES * 4096 // 4
    print(f"copies {copies} ({copy_bytes} bytes), other records {others}, refused {bounded}")
    assert (read, pause) == (0, 0)
    assert copies >= 2 and copy_bytes == sent, (copies, copy_bytes, sent)
    assert sent <= quarter, sent
    assert bounded > 0
    # The ring still took samples after the copies' share was used.
    assert others > copies


def test_a_pause_from_user_space_stops_every_copy() -> None:
    with _load() as prog:  # attached: copies may be sent before the pause below
        flow = prog.map("unwind_copy_flow")
        flow.update(b"\0\0\0\0", FLOW.pack(0, 0, 1, 0))
        _records(prog)  # what came before the pause is read away
        sent_before = _flow(prog)[0]
        _spin(10)
        prog.detach()
        sent, _read, _pause, bounded = _flow(prog)
        copies, _bytes, others = _records(prog)
    assert (sent, copies) == (sent_before, 0)
    assert bounded > 0 and others > 0
