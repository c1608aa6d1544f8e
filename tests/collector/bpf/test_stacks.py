"""StackReader generations against a real stack map (bpf/selftest.bpf.c walks the kernel
stack of every exec): a clear keeps what each deleted id held for stacks walked before it."""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import time
from pathlib import Path

import pytest

from collector.bpf import AttachSpec, LoadedProgram, RingBuffer, StackReader, load
from collector.bpf.events import EVENT, F_USER_SPILL
from tests.support.workloads import build

pytestmark = pytest.mark.bpf

EXEC = AttachSpec("tracepoint", "on_exec", "sched:sched_process_exec")
SELFTEST_EVENT = struct.Struct("<QIi")


def _boot_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


@pytest.fixture
def prog() -> LoadedProgram:
    with load("selftest", {"MAGIC": 7}, [EXEC]) as p:
        yield p


def _exec_stack_ids(rb: RingBuffer, n: int = 5) -> list[int]:
    rb.drain(lambda v: None)
    for _ in range(n):
        os.posix_spawn("/bin/true", ["true"], os.environ)
    for _ in range(n):
        os.wait()
    ids: list[int] = []
    rb.drain(lambda v: ids.append(SELFTEST_EVENT.unpack(bytes(v))[2]))
    return [i for i in ids if i >= 0]


def test_stacks_walked_before_a_clear_resolve_after_it(prog: LoadedProgram) -> None:
    rb = RingBuffer(prog.map("events"))
    try:
        reader = StackReader(prog.map("stacks"))
        before = _boot_ns()
        ids = _exec_stack_ids(rb)
        assert ids
        # Not read yet when the map is emptied: the clear itself keeps the stack.
        reader.clear()
        after = _boot_ns() + 20_000_000
        stack = reader.get(ids[0], before)
        assert stack and all(a >= 1 << 63 for a in stack)
        assert reader.get(ids[0], before) is stack and reader.lost == 0
        # Walked after the clear: the current map, where the id is gone.
        assert reader.get(ids[0], after) is None and reader.lost == 1
        # The same exec path walked again lands in the same bucket with the same stack: a
        # walk around the clear (either generation) is unambiguous then.
        again = _exec_stack_ids(rb)
        assert ids[0] in again
        deleted = reader.deleted_at(ids[0])
        assert deleted is not None and before < deleted[0] <= deleted[1] < after
        assert reader.get(ids[0], deleted[0]) == stack
        # Deleted again by the next clear, with the same stack: walks before either deletion
        # get it.
        first_deletion = deleted
        reader.clear()
        second = reader.deleted_at(ids[0])
        assert second is not None and second[0] > first_deletion[1]
        assert reader.get(ids[0], first_deletion[1] + 1_000_000) == stack
        assert reader.get(ids[0], before) == stack
        # An id deleted once and not made again keeps its stack over later clears (an
        # off-CPU wait may end long after its stack was walked).
        reader.clear()
        if reader.deleted_at(ids[0]) == second:  # not made again meanwhile by another exec
            assert reader.get(ids[0], first_deletion[1] + 1_000_000) == stack
        assert reader.clears == 3
    finally:
        rb.close()


def test_a_bucket_reused_by_another_stack_is_not_guessed(
    prog: LoadedProgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    rb = RingBuffer(prog.map("events"))
    try:
        reader = StackReader(prog.map("stacks"))
        ids = _exec_stack_ids(rb)
        assert ids
        first = reader.get(ids[0])
        assert first
        reader.clear()
        # The kernel refills a freed bucket with another stack only by chance (a hash
        # collision) and the map cannot be written from user space: stand in for that
        # one lookup.
        other = (0xFFFFFFFF81000000, 0xFFFFFFFF81000010)
        monkeypatch.setattr(reader, "_current", lambda stack_id: other)
        deleted = reader.deleted_at(ids[0])
        assert deleted is not None
        assert reader.get(ids[0], deleted[1]) is None and reader.lost == 1  # ambiguous
        assert reader.get(ids[0], deleted[0] - 1_000_000) is first  # before its deletion
        assert reader.get(ids[0], deleted[1] + 1_000_000) == other  # after it
        assert reader.get(ids[0]) == other
    finally:
        rb.close()


def _exec_ranges(pid: int) -> list[tuple[int, int]]:
    out = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        span, perms = line.split()[:2]
        if "x" in perms:
            lo, hi = (int(x, 16) for x in span.split("-"))
            out.append((lo, hi))
    return out


def test_a_colliding_stack_spills_into_the_second_map() -> None:
    """bpf/common.h walk_stack: a stack whose bucket in "stacks" holds another stack goes to
    "stacks_spill"; the event's flags say so, and its id resolves there to its own stack.
    The offcpu program walks into the stack maps (the cpu program sends frames in the event)."""
    binary = build("offcpu_two_waits", ("-no-pie",))
    switch = AttachSpec("raw_tracepoint", "on_switch_raw", "sched_switch")
    # One bucket: the workload's two waits have two stacks, so whichever of the machine's or
    # its own holds the bucket, the other wait's stack collides (8 buckets left it to how
    # many other sleepers the machine had: a quiet clean-clone run spilled none of 200). The
    # spill map is large: every other sleeper of the machine lands there too.
    defines = {"STACK_MAP_SIZE": 1, "SPILL_MAP_SIZE": 16384, "KERNEL_STACKS": 0, "MAX_RATE": 0}
    with load("offcpu", defines, [switch]) as prog:
        rb = RingBuffer(prog.map("events"))
        try:
            time.sleep(0.3)  # the machine's own sleepers take the buckets first
            work = subprocess.Popen([str(binary), "100", "2", "2"], stdout=subprocess.DEVNULL)
            events: list[tuple] = []
            # Its code as mapped while it runs: read at every drain, since a fixed wait for
            # ld.so to map libc fell short under load in CI (a libc frame "outside" the maps).
            maps: set[tuple[int, int]] = set()
            while work.poll() is None:
                rb.poll(0.2)
                rb.drain(lambda v: events.append(EVENT.unpack_from(v)))
                with contextlib.suppress(OSError):  # it exited between the poll and the read
                    maps.update(_exec_ranges(work.pid))
            rb.drain(lambda v: events.append(EVENT.unpack_from(v)))
            main_map = StackReader(prog.map("stacks"))
            spill = StackReader(prog.map("stacks_spill"))
            mine = [e for e in events if e[4] == work.pid and e[10].startswith(b"offcpu_two")]
            spilled = [e for e in mine if e[3] & F_USER_SPILL]
            assert len(spilled) >= 20, f"{len(spilled)} of {len(mine)} samples spilled"
            in_exec = 0
            for e in spilled:
                stack = spill.get(e[7])
                assert stack
                assert main_map.get(e[7]) != stack  # in "stacks" that id is another's
                if all(any(a <= f < b for a, b in maps) for f in stack):
                    continue  # its own stack: every frame in code this process maps
                # A wait inside its execve, after the new name and memory were installed
                # (reading ld.so under load): the user registers are still the forked
                # parent's call of execve, one frame in code the new image does not map.
                assert len(stack) == 1, stack
                in_exec += 1
            assert in_exec <= 3, in_exec
        finally:
            rb.close()
