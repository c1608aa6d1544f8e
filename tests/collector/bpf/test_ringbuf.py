"""RingBuffer against the real kernel at a high event rate: what the producer side sees.

The kernel reads consumer_pos (on the page the reader writes) at every reservation; a torn
store there makes it think the buffer is full and drop events (counted as ringbuf_full).
consumer_watch.c reads that page from another process exactly as the kernel does.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from collector.bpf import AttachSpec, RingBuffer, load
from collector.bpf.events import COMMON_COUNTERS, EVENT

pytestmark = pytest.mark.bpf

HERE = Path(__file__).resolve().parent
FULL = struct.pack("<I", COMMON_COUNTERS.index("ringbuf_full"))
SECONDS = 3.0


@pytest.fixture(scope="module")
def watcher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc is needed to build consumer_watch.c")
    out = tmp_path_factory.mktemp("watch") / "consumer_watch"
    subprocess.run([gcc, "-O1", "-o", str(out), str(HERE / "consumer_watch.c")], check=True)
    return out


def test_consumer_pos_is_published_whole_while_draining(watcher: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs: the watcher must read while the reader writes")
    # Every CPU's samples (idle ones too) at 10 kHz: ~10 000 records per second per CPU,
    # each followed by one consumer_pos store.
    perf = AttachSpec("perf_event", "on_sample", "cpu-clock", sample_freq=10000)
    with load("cpu", {"INCLUDE_IDLE": 1}, [perf]) as prog:
        rb = RingBuffer(prog.map("events"))
        fd = prog.map("events").fd
        records = 0
        try:
            # Watcher and reader on different CPUs, so the watcher reads during the stores.
            os.sched_setaffinity(0, {cpus[0]})
            watch = subprocess.Popen(
                [str(watcher), str(fd), str(SECONDS)],
                pass_fds=(fd,),
                preexec_fn=lambda: os.sched_setaffinity(0, {cpus[1]}),
                stdout=subprocess.PIPE,
                text=True,
            )
            end = time.monotonic() + SECONDS
            while time.monotonic() < end:
                rb.poll(0.05)  # ~1000 records per drain: long runs of stores
                records += rb.drain(lambda v: EVENT.unpack_from(v))  # frames follow
            out, _ = watch.communicate(timeout=30)
            full = prog.map("counters").percpu_u64_sum(FULL)
        finally:
            os.sched_setaffinity(0, cpus)
            rb.close()
    stats = dict(kv.split("=") for kv in out.split())
    print(f"records={records} {out.strip()} ringbuf_full={full}")
    assert watch.returncode == 0, out
    assert records >= 1000 * SECONDS * (os.cpu_count() or 1) / 2
    assert int(stats["changes"]) >= 1000  # the watcher really saw stores as they happened
    assert int(stats["torn"]) == 0, "consumer_pos went backwards: a torn store"
    assert full == 0
