"""Which PID namespace the collector's /proc numbers processes in, and the defines that make
BPF programs report pids in that namespace (bpf/pidns.h).

In the initial namespace (a host service, a DaemonSet with hostPID) the pids BPF sees are the
ones /proc shows, so nothing is translated. In any other (a sidecar sharing its pod's process
namespace, ``unshare --pid --mount-proc``) they differ: BPF must ask the kernel for the pid in
this namespace, or the collector would read another process's /proc entry, or none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from collector.errors import EnvironmentProblem
from collector.proc import procfs

# PROC_PID_INIT_INO (include/linux/proc_ns.h): the initial PID namespace's inode number is a
# constant of the kernel ABI, so "am I in the host's namespace" needs no look at /proc/1.
INIT_PID_NS_INO = 0xEFFFFFFC


@dataclass(frozen=True, slots=True)
class PidNamespace:
    dev: int  # device of the nsfs file, in the kernel's dev_t encoding (what BPF compares)
    ino: int  # inode number: the number in "pid:[4026531836]"

    @property
    def initial(self) -> bool:
        return self.ino == INIT_PID_NS_INO

    def defines(self) -> dict[str, int]:
        """-D defines for bpf/pidns.h. Translation only outside the initial namespace: there
        bpf_get_current_pid_tgid() is already right for every task, containers included,
        while the helper would call every containerized task 'outside'."""
        if self.initial:
            return {"PIDNS_TRANSLATE": 0}
        return {"PIDNS_TRANSLATE": 1, "PIDNS_DEV": self.dev, "PIDNS_INO": self.ino}


def kernel_dev(st_dev: int) -> int:
    """stat(2)'s st_dev (new_encode_dev) -> the kernel-internal dev_t (MKDEV: 12-bit major
    above a 20-bit minor) that bpf_get_ns_current_pid_tgid compares against."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def namespace_of(ns_file: str) -> PidNamespace:
    st = os.stat(ns_file)  # follows the magic link to the nsfs inode
    return PidNamespace(kernel_dev(st.st_dev), st.st_ino)


def proc_namespace(proc: str = "/proc") -> PidNamespace:
    """The namespace whose pids ``proc`` shows, i.e. the pids the collector will read it with.

    Usually the collector's own. But a process that entered a namespace without mounting a
    proc of its own (``unshare --pid --fork`` without ``--mount-proc``) still reads an
    ancestor namespace's /proc: NSpid of /proc/self/status then lists more than one pid.
    The kernel gives no handle on an ancestor namespace (NS_GET_PARENT stops at one's own), so
    that case is told apart by what it shows: a kernel thread (kthreadd is pid 2) is visible
    only in the initial namespace's /proc. Otherwise /proc/1/ns/pid names it, if readable.
    """
    own = namespace_of(f"{proc}/self/ns/pid")
    if len(procfs.read_nspid_of("self", proc)) <= 1:
        return own
    if procfs.is_kernel_thread(2, proc):
        return PidNamespace(own.dev, INIT_PID_NS_INO)  # nsfs is one superblock: same dev
    try:
        return namespace_of(f"{proc}/1/ns/pid")
    except OSError as exc:
        raise EnvironmentProblem(
            f"{proc} belongs to another PID namespace than the collector's and it cannot be "
            f"identified ({exc.strerror}): give the collector a /proc of its own namespace "
            "(unshare --mount-proc; a container's own /proc) or of the host's"
        ) from None


def own_pid(proc: str = "/proc") -> int:
    """The collector's pid as ``proc`` shows it (which is how BPF reports pids here)."""
    try:
        return int(os.readlink(f"{proc}/self"))
    except (OSError, ValueError):
        return os.getpid()


def pidns_defines(proc: str = "/proc") -> dict[str, int]:
    """What a receiver's ``defines()`` merges so its program reports pids as /proc shows them."""
    return proc_namespace(proc).defines()
