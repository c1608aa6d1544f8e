"""Checks that turn a missing machine feature into one clear line before any BPF is loaded."""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
import re
from dataclasses import dataclass

from collector.errors import EnvironmentProblem

log = logging.getLogger("collector.preflight")

# Capability bits (linux/capability.h).
CAP_DAC_OVERRIDE = 1
CAP_DAC_READ_SEARCH = 2
CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24
CAP_SYSLOG = 34
CAP_PERFMON = 38
CAP_BPF = 39
CAP_CHECKPOINT_RESTORE = 40

CAP_NAMES = {
    CAP_DAC_OVERRIDE: "CAP_DAC_OVERRIDE",
    CAP_DAC_READ_SEARCH: "CAP_DAC_READ_SEARCH",
    CAP_SYS_PTRACE: "CAP_SYS_PTRACE",
    CAP_SYS_ADMIN: "CAP_SYS_ADMIN",
    CAP_SYS_RESOURCE: "CAP_SYS_RESOURCE",
    CAP_SYSLOG: "CAP_SYSLOG",
    CAP_PERFMON: "CAP_PERFMON",
    CAP_BPF: "CAP_BPF",
    CAP_CHECKPOINT_RESTORE: "CAP_CHECKPOINT_RESTORE",
}


@dataclass(frozen=True, slots=True)
class Need:
    """One capability the BPF receivers need, why, and what else grants the same."""

    cap: int
    why: str
    also: tuple[int, ...] = ()  # capabilities that grant it as well
    optional: bool = False  # without it the collector runs and says what it cannot do

    @property
    def name(self) -> str:
        return CAP_NAMES[self.cap]

    def met(self, caps: int) -> bool:
        return any(caps & (1 << c) for c in (self.cap, *self.also))


def kernel_version(release: str | None = None) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", release or platform.release())
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def capability_needs(kernel: tuple[int, int] | None = None) -> list[Need]:
    """What the BPF receivers and the process snapshots behind them need on this kernel
    (measured on Linux 6.18 as a non-root user; deploy/README.md has the table)."""
    k = kernel or kernel_version()
    needs = []
    if k >= (5, 8):
        needs.append(Need(CAP_BPF, "load BPF programs, create maps", (CAP_SYS_ADMIN,)))
        needs.append(Need(CAP_PERFMON, "perf events on every CPU", (CAP_SYS_ADMIN,)))
    else:  # CAP_BPF and CAP_PERFMON came with 5.8
        needs.append(Need(CAP_SYS_ADMIN, "BPF and perf events before Linux 5.8"))
    needs.append(Need(CAP_SYS_PTRACE, "read other users' /proc/PID/maps"))
    map_files = "open /proc/PID/map_files to pin binaries"
    if k >= (5, 9):
        needs.append(Need(CAP_CHECKPOINT_RESTORE, map_files, (CAP_SYS_ADMIN,)))
    elif k >= (5, 8):  # before 5.8 the CAP_SYS_ADMIN needed above opens map_files too
        needs.append(Need(CAP_SYS_ADMIN, f"{map_files} before Linux 5.9"))
    needs.append(
        Need(
            CAP_DAC_READ_SEARCH,
            "enter other users' /proc/PID/map_files (mode 0500) and root's tracefs (0700)",
            (CAP_DAC_OVERRIDE,),
        )
    )
    if k < (5, 11):  # BPF memory is charged to the memory cgroup since 5.11, not memlock
        needs.append(Need(CAP_SYS_RESOURCE, "raise RLIMIT_MEMLOCK for BPF maps before 5.11"))
    needs.append(Need(CAP_SYSLOG, "kernel symbol addresses in /proc/kallsyms", optional=True))
    return needs


def cap_names(caps: int) -> list[str]:
    return [name for bit, name in sorted(CAP_NAMES.items()) if caps & (1 << bit)]


def check_capabilities(caps: int | None = None, kernel: tuple[int, int] | None = None) -> str:
    """Raise one line naming every missing capability; else return the line to log that
    states what the collector has and needs (logged once every other check passed too, so
    a refusal stays a single line)."""
    caps = _effective_caps() if caps is None else caps
    needs = capability_needs(kernel)
    missing = [n for n in needs if not n.optional and not n.met(caps)]
    have = ",".join(cap_names(caps)) or "none"
    if missing:
        listed = ", ".join(f"{n.name} ({n.why})" for n in missing)
        raise EnvironmentProblem(
            f"loading BPF programs and reading other processes needs root or these "
            f"capabilities, missing: {listed}; run as root, or grant them (setcap on the "
            "interpreter, systemd AmbientCapabilities=, a container's securityContext): "
            "see deploy/README.md"
        )
    need = ",".join(n.name for n in needs if not n.optional)
    line = f"capabilities have={have} need={need}"
    degraded = [n for n in needs if n.optional and not n.met(caps)]
    if degraded:
        line += " missing_optional=" + ",".join(n.name for n in degraded)
        line += " (" + "; ".join(f"without it no {n.why}" for n in degraded) + ")"
    return line


TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")

# The raw bpf(2)/perf_event_open(2) numbers in collector/bpf/syscall.py and the ring buffer's
# reliance on x86-64's strong memory ordering hold for this architecture only.
SUPPORTED_MACHINES = ("x86_64",)


def _effective_caps() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError as exc:
        # Saying "needs root" here would send the user the wrong way.
        raise EnvironmentProblem(
            f"cannot read /proc/self/status to check BPF capabilities ({exc.strerror or exc}): "
            "is /proc mounted?"
        ) from None
    return 0


def check_architecture() -> None:
    machine = platform.machine()
    if machine not in SUPPORTED_MACHINES:
        raise EnvironmentProblem(
            f"processor architecture {machine or 'unknown'!r} is not supported yet: the BPF "
            f"receivers run on {', '.join(SUPPORTED_MACHINES)} only (syscall numbers and the "
            "ring buffer's memory ordering are x86-64 specific)"
        )


def has_bpf_privileges() -> bool:
    caps = _effective_caps()
    if caps & (1 << CAP_SYS_ADMIN):
        return True
    return bool(caps & (1 << CAP_BPF)) and bool(caps & (1 << CAP_PERFMON))


def tracefs_path() -> str | None:
    for path in TRACEFS_CANDIDATES:
        if os.path.isdir(os.path.join(path, "events")):
            return path
    return None


def tracefs_mounted() -> str | None:
    """Where tracefs is mounted (from /proc/self/mounts), whether or not it is readable."""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[2] == "tracefs" and fields[1] in TRACEFS_CANDIDATES:
                    return fields[1]
    except OSError:
        pass
    return None


def check_bpf(needs_tracefs: bool) -> None:
    """Raise EnvironmentProblem naming what is missing and what to do about it."""
    check_architecture()
    caps_line = check_capabilities()
    if needs_tracefs and tracefs_path() is None:
        mounted = tracefs_mounted()
        if mounted:
            raise EnvironmentProblem(
                f"tracefs at {mounted} is not readable by uid {os.geteuid()} (it is root's, "
                "mode 0700): grant CAP_DAC_READ_SEARCH or run as uid 0"
            )
        raise EnvironmentProblem(
            "tracefs is not mounted (needed for tracepoints and uprobes): "
            "run `mount -t tracefs nodev /sys/kernel/tracing` (scripts/setup.sh does this)"
        )
    release = platform.release()
    if not os.environ.get("BCC_KERNEL_SOURCE") and not os.path.exists(
        f"/lib/modules/{release}/build"
    ):
        raise EnvironmentProblem(
            f"no kernel headers for {release} (/lib/modules/{release}/build is missing); "
            "bcc compiles BPF programs against them: run scripts/setup.sh, or set "
            "BCC_KERNEL_SOURCE to a headers folder"
        )
    if importlib.util.find_spec("bcc") is None:
        raise EnvironmentProblem(
            "bcc's Python module is not importable: install Debian's python3-bpfcc and run "
            "scripts/setup.sh (the PyPI package named `bcc` is a different project)"
        )
    log.info(caps_line)
