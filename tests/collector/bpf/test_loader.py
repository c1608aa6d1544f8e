"""collector.bpf against the real kernel: the loader child, map syscalls, ringbuf, stacks.

bpf/selftest.bpf.c sends {MAGIC, tgid, stack id} to a ringbuf on every exec.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import bpf as bpf_sources
from collector.bpf import AttachSpec, LoadedProgram, Map, RingBuffer, StackReader, load
from collector.bpf.syscall import MAP_TYPE_HASH, MAP_TYPE_RINGBUF, BpfError
from collector.errors import EnvironmentProblem, RuntimeFailure

pytestmark = pytest.mark.bpf

EXEC = AttachSpec("tracepoint", "on_exec", "sched:sched_process_exec")
EVENT = struct.Struct("<QIi")


@pytest.fixture(scope="module")
def prog() -> LoadedProgram:
    with load("selftest", {"MAGIC": 4242}, [EXEC]) as p:
        yield p


def _fds_open() -> set[int]:
    fds = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except FileNotFoundError:  # the directory fd listdir itself used
            continue
        if not target.endswith("/fd"):
            fds.add(int(name))
    return fds


def test_manifest_describes_maps(prog: LoadedProgram) -> None:
    assert set(prog.maps) == {"events", "execs", "scratch", "stacks"}
    assert prog.map("events").map_type == MAP_TYPE_RINGBUF
    assert prog.map("events").max_entries == os.sysconf("SC_PAGE_SIZE")
    scratch = prog.map("scratch")
    assert (scratch.map_type, scratch.key_size, scratch.value_size) == (MAP_TYPE_HASH, 4, 8)
    assert [a["kind"] for a in prog.attachments] == ["tracepoint"]
    with pytest.raises(KeyError, match="no map 'nope'"):
        prog.map("nope")


def test_parent_never_imports_bcc() -> None:
    code = (
        "import sys, re; from collector.bpf import load, AttachSpec;"
        "p = load('selftest', {}, [AttachSpec('tracepoint', 'on_exec', "
        "'sched:sched_process_exec')]);"
        # VmHWM is this mm's peak (ru_maxrss would include the forked pytest's, kept over exec)
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1);"
        "print('bcc' in sys.modules, hwm)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    ).stdout.split()
    assert out[0] == "False"
    assert int(out[1]) < 60_000, f"parent peak RSS {out[1]} KiB"


def test_ringbuf_delivers_exec_events_with_define(prog: LoadedProgram) -> None:
    rb = RingBuffer(prog.map("events"))
    try:
        rb.drain(lambda v: None)  # whatever other execs left behind
        child = subprocess.run([shutil.which("true") or "/bin/true"], check=True)
        del child
        assert rb.poll(2.0)
        got: list[tuple[int, int, int]] = []
        n = rb.drain(lambda v: got.append(EVENT.unpack(bytes(v))))
        assert n == len(got) >= 1
        assert all(magic == 4242 for magic, _, _ in got)
        assert rb.pending() == 0
        # Stack ids resolve to kernel addresses through the stack reader.
        reader = StackReader(prog.map("stacks"))
        ids = [sid for _, _, sid in got if sid >= 0]
        assert ids, got
        stack = reader.get(ids[0])
        assert stack and all(a >= 1 << 63 for a in stack)
        assert reader.get(ids[0]) is stack  # cached: same tuple object
        reader.clear()
        assert reader.clears == 1 and len(reader) == 0
        assert reader.get(ids[0]) is None and reader.lost == 1
    finally:
        rb.close()


def test_ringbuf_many_records_wrap_around(prog: LoadedProgram) -> None:
    """More records than fit in the one-page ringbuf: positions wrap, nothing is misread."""
    rb = RingBuffer(prog.map("events"))
    try:
        seen = 0
        for _ in range(6):
            for _ in range(40):  # 40 * 24 bytes < 4096: fits between drains
                os.posix_spawn("/bin/true", ["true"], os.environ)
            for _ in range(40):
                os.wait()
            seen += rb.drain(lambda v: None if EVENT.unpack(bytes(v))[0] == 4242 else 1 / 0)
        assert seen >= 200
    finally:
        rb.close()


def test_percpu_counter_and_hash_map_ops(prog: LoadedProgram) -> None:
    execs = prog.map("execs")
    before = execs.percpu_u64_sum(b"\0\0\0\0")
    subprocess.run(["/bin/true"], check=True)
    assert execs.percpu_u64_sum(b"\0\0\0\0") > before
    scratch = prog.map("scratch")
    key, value = struct.pack("<I", 7), struct.pack("<Q", 99)
    assert scratch.lookup(key) is None
    scratch.update(key, value)
    assert scratch.lookup(key) == value
    assert scratch.keys() == [key]
    assert scratch.delete(key) and not scratch.delete(key)
    for i in range(10):
        scratch.update(struct.pack("<I", i), value)
    assert scratch.clear() == 10 and scratch.keys() == []
    with pytest.raises(ValueError, match="key is 2 bytes"):
        scratch.lookup(b"\0\0")
    for i in range(64):
        scratch.update(struct.pack("<I", i), value)
    with pytest.raises(BpfError):  # the map is full
        scratch.update(struct.pack("<I", 1000), value)


def test_close_detaches_and_releases_fds() -> None:
    before = _fds_open()
    prog = load("selftest", {"MAGIC": 1}, [EXEC])
    assert len(_fds_open() - before) == 5  # 4 maps + 1 tracepoint
    execs = prog.map("execs")
    kept = Map(os.dup(execs.fd), execs.map_type, 4, 8, 1, "execs")  # outlives the program
    subprocess.run(["/bin/true"], check=True)
    assert kept.percpu_u64_sum(b"\0\0\0\0") >= 1
    prog.close()
    prog.close()
    assert _fds_open() == before | {kept.fd}
    count = kept.percpu_u64_sum(b"\0\0\0\0")
    subprocess.run(["/bin/true"], check=True)
    assert kept.percpu_u64_sum(b"\0\0\0\0") == count, "still attached after close()"
    kept.close()


def test_compile_error_is_one_clear_line(tmp_path: Path) -> None:
    broken = Path(bpf_sources.source_dir()) / "zz_broken_test.bpf.c"
    broken.write_text("int on_exec(void *ctx) { return undefined_symbol_xyz; }\n")
    try:
        with pytest.raises(RuntimeFailure) as err:
            load("zz_broken_test", {}, [EXEC])
    finally:
        broken.unlink()
    msg = str(err.value)
    assert "\n" not in msg
    assert "zz_broken_test.bpf.c" in msg and "undefined_symbol_xyz" in msg


def test_missing_things_are_clear_errors() -> None:
    with pytest.raises(FileNotFoundError, match="no BPF program named 'nope'"):
        load("nope")
    with pytest.raises(RuntimeFailure, match="bad define"):
        load("selftest", {"MAGIC": "1; evil()"}, [])
    with pytest.raises(RuntimeFailure, match="sched:no_such_event"):
        load("selftest", {}, [AttachSpec("tracepoint", "on_exec", "sched:no_such_event")])


def test_hardware_cycles_absent_is_environment_problem() -> None:
    spec = AttachSpec("perf_event", "on_exec", "cycles", sample_freq=99)
    try:
        prog = load("selftest", {}, [spec])
    except EnvironmentProblem as exc:
        assert "use event: cpu-clock" in str(exc)
    else:  # this machine has a PMU: the events are attached per CPU
        with prog:
            assert {a["cpu"] for a in prog.attachments} == set(range(os.cpu_count() or 1))
