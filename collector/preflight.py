"""Checks that turn a missing machine feature into one clear line before any BPF is loaded."""

from __future__ import annotations

import importlib.util
import os
import platform

from collector.errors import EnvironmentProblem

# Capability bits (linux/capability.h).
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

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


def check_bpf(needs_tracefs: bool) -> None:
    """Raise EnvironmentProblem naming the first missing piece and what to do about it."""
    check_architecture()
    if not has_bpf_privileges():
        raise EnvironmentProblem(
            "loading BPF programs needs root (or CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN): "
            "run the collector as root, e.g. `sudo collector --config ...`"
        )
    if needs_tracefs and tracefs_path() is None:
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
