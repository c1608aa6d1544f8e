"""Reading one process from /proc: stat fields, maps, cgroup container id, exe path, NSpid."""

from __future__ import annotations

import functools
import os
import re
import time

from collector.proc import procmap
from collector.proc.mapline import MapLine

CLK_TCK = os.sysconf("SC_CLK_TCK")
# A 64-hex container id as one path segment of a cgroup, the way the runtimes spell it:
# docker (/docker/<id>, docker-<id>.scope), containerd (/k8s.io/<id>, /default/<id>,
# cri-containerd-<id>.scope), CRI-O (crio-<id>.scope), podman (libpod-<id>.scope,
# /libpod_parent/libpod-<id>), kubelet's cgroupfs driver (/kubepods/<qos>/pod<uid>/<id>).
# The id must fill the segment after an optional "<runtime>-" prefix (so a longer hex run or
# a hash inside a file name is not taken for one).
_CONTAINER_SEG = re.compile(r"(?:[a-z][a-z0-9_]*(?:-[a-z][a-z0-9_]*)*-)?([0-9a-f]{64})(?:\.scope)?")


def boot_time_ns() -> int:
    """Wall-clock time of boot on the clock /proc/<pid>/stat start_time counts from."""
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def read_file(path: str) -> bytes:
    """The whole of a /proc file, with open/read/close alone: Python's ``open`` adds an fstat,
    an ioctl and lseeks per file (4 syscalls of 8), which a snapshot of every new process pays
    several times. Raises OSError as ``open`` does."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_stat(pid: int) -> tuple[str, int] | None:
    """(comm, start_time in clock ticks since boot), or None if the process is gone."""
    try:
        data = read_file(f"/proc/{pid}/stat")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return parse_stat(data)


def parse_stat(data: bytes) -> tuple[str, int] | None:
    """(comm, start_time) from the text of /proc/<pid>/stat; None if it does not parse."""
    # comm may contain spaces and parentheses: it runs from the first "(" to the last ")".
    lp, rp = data.find(b"("), data.rfind(b")")
    if lp < 0 or rp < lp:
        return None
    fields = data[rp + 2 :].split()
    # fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
    if len(fields) < 20 or not fields[19].isdigit():
        return None
    return data[lp + 1 : rp].decode("utf-8", "replace"), int(fields[19])


PF_KTHREAD = 0x00200000  # include/linux/sched.h


def is_kernel_thread(pid: int, proc: str = "/proc") -> bool:
    """Whether ``pid`` of that /proc is a kernel thread (flags, field 9 of stat)."""
    try:
        data = read_file(f"{proc}/{pid}/stat")
    except OSError:
        return False
    fields = data[data.rfind(b")") + 2 :].split()
    # fields[0] is field 3 (state), so field 9 (flags) is fields[6].
    return len(fields) > 6 and fields[6].isdigit() and bool(int(fields[6]) & PF_KTHREAD)


PF_EXITING = 0x00000004  # include/linux/sched.h: set before the exit tracepoint fires


def is_exiting(pid: int, proc: str = "/proc") -> bool:
    """Whether ``pid`` is gone, a zombie, or a single-threaded process in its exit path.

    Since Linux 6.16 the sched_process_exit tracepoint fires before exit_mm(), so a sample taken
    in the exit path after it still has a user stack and readable maps: state (loaded tables, a
    snapshot) made from such a sample would outlive the exit event that was already read.
    """
    try:
        data = read_file(f"{proc}/{pid}/stat")
    except OSError:
        return True
    fields = data[data.rfind(b")") + 2 :].split()
    # fields[0] is field 3 (state); field 9 (flags) is fields[6], field 20 (threads) fields[17].
    if len(fields) < 18 or fields[0] in (b"Z", b"X", b"x"):
        return True
    exiting = fields[6].isdigit() and bool(int(fields[6]) & PF_EXITING)
    return exiting and fields[17] == b"1"  # a leader that exited before its threads is not


def read_maps(pid: int, executable_only: bool = True) -> list[MapLine] | None:
    """The mappings of ``pid`` (only the executable ones by default); None if it is gone.
    Executable ones come from the PROCMAP_QUERY ioctl where the kernel has it (procmap.py:
    a third of the cost of formatting and splitting the whole text), else from the text."""
    if executable_only and procmap.supported():
        try:
            vmas = procmap.executable_vmas(pid)
        except procmap.Unavailable:
            pass  # no ioctl here, or a name longer than PATH_MAX: the text says it all
        else:
            if not vmas:
                return vmas  # gone (None), or no address space: the text is empty too
            return vmas + _gate_lines()
    try:
        data = read_file(f"/proc/{pid}/maps")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return parse_maps(data, executable_only)


@functools.cache
def _gate_lines() -> list[MapLine]:
    """x86-64's [vsyscall] page: the maps text lists it for every process, but it is no VMA of
    the process, so PROCMAP_QUERY never returns it. Taken once from our own maps (absent when
    the kernel runs with vsyscall=none)."""
    try:
        data = read_file("/proc/self/maps")
    except OSError:
        return []
    return [m for m in parse_maps(data) if m.path == "[vsyscall]"]


def parse_maps(data: bytes, executable_only: bool = True) -> list[MapLine]:
    """Mappings from the text of /proc/<pid>/maps. The kernel writes it, but the path column
    is any name a user gave a file (spaces, "(deleted)", invalid UTF-8): it is only a label,
    never opened. A line that does not parse is skipped."""
    out = []
    for raw in data.splitlines():
        parts = raw.split(None, 5)
        if len(parts) < 5:
            continue
        perms = parts[1].decode("ascii", "replace")
        if executable_only and "x" not in perms:
            continue
        lo, sep, hi = parts[0].partition(b"-")
        major, colon, minor = parts[3].partition(b":")
        try:
            start, end, offset, inode = int(lo, 16), int(hi, 16), int(parts[2], 16), int(parts[4])
            dev = int(major, 16) << 32 | int(minor, 16) if colon else -1
        except ValueError:
            continue
        if not sep or end <= start or min(start, offset, inode, dev) < 0:
            continue
        path = parts[5].decode("utf-8", "replace") if len(parts) > 5 else ""
        out.append(MapLine(start, end, perms, offset, inode, path, dev))
    return out


def read_exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def read_container_id(pid: int) -> str:
    try:
        text = read_file(f"/proc/{pid}/cgroup").decode("utf-8", "replace")
    except OSError:
        return ""
    return container_id_from_cgroup(text)


@functools.lru_cache(maxsize=1024)
def container_id_from_cgroup(text: str) -> str:
    """The container id in the text of /proc/<pid>/cgroup, or "" when there is none.

    cgroup v2's line ("0::/path") is preferred, then the v1 lines in order (they normally
    agree; a hybrid host mounts both). Within a path the innermost id wins: a container nested
    in another (docker-in-docker, a pod's container under its sandbox) is the process's own.
    A container that has its own cgroup namespace sees "0::/" and has no id to find here.
    Cached by text: every process of one cgroup has the same, and the regular expression
    over each segment was a sixth of a new process's snapshot.
    """
    best = ""
    for line in text.splitlines():
        _, sep, rest = line.partition(":")
        if not sep:
            continue
        controllers, sep, path = rest.partition(":")
        if not sep:
            continue
        found = ""
        for seg in path.split("/"):
            m = _CONTAINER_SEG.fullmatch(seg)
            if m:
                found = m.group(1)
        if found and not controllers and line.startswith("0:"):
            return found  # the unified hierarchy's answer
        if found and not best:
            best = found
    return best


def read_nspid(pid: int) -> tuple[int, ...]:
    """The process's pid in each PID namespace from this /proc's down to its own (the NSpid
    line of /proc/<pid>/status); () when gone or unreadable. A process in this /proc's own
    PID namespace (every one on a host without containers) is (pid,): known from one readlink,
    without the status file, the largest that /proc formats for a snapshot."""
    try:
        if os.readlink(f"/proc/{pid}/ns/pid") == _proc_pidns():
            return (pid,)
    except OSError:
        pass  # gone, or ns links unreadable: the status file says
    return read_nspid_of(str(pid))


@functools.cache
def _proc_pidns() -> str:
    """The PID namespace /proc numbers pids in. Our own when /proc gives us a single NSpid
    (a collector in a container given the host's /proc has two or more); else that of /proc's
    pid 1, whose link some init processes do not let even root read (a sandbox's init here:
    then every snapshot read the status file, a fifth of its cost)."""
    if len(read_nspid_of("self")) == 1:
        try:
            return os.readlink("/proc/self/ns/pid")
        except OSError:
            pass
    try:
        return os.readlink("/proc/1/ns/pid")
    except OSError:
        return "?"  # never equal to a link read


def read_nspid_of(entry: str, proc: str = "/proc") -> tuple[int, ...]:
    try:
        data = read_file(f"{proc}/{entry}/status")
    except OSError:
        return ()
    return parse_nspid(data)


def parse_nspid(data: bytes) -> tuple[int, ...]:
    """NSpid from the text of /proc/<pid>/status ("NSpid:\t4242\t7\t1"): outermost first.
    () when the line is missing (kernels before 4.1) or does not parse."""
    for line in data.splitlines():
        if line.startswith(b"NSpid:"):
            fields = line[6:].split()
            if not fields or not all(f.isdigit() for f in fields):
                return ()
            return tuple(int(f) for f in fields)
    return ()
