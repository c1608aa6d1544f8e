"""Why this machine cannot run the real-kernel tests, or None when it can."""

from __future__ import annotations

import functools
import os
import platform


@functools.cache
def bpf_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "not running as root"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "kernel has no BTF (/sys/kernel/btf/vmlinux missing)"
    if not (
        os.path.exists("/sys/kernel/tracing/events")
        or os.path.exists("/sys/kernel/debug/tracing/events")
    ):
        return "tracefs is not mounted (mount -t tracefs nodev /sys/kernel/tracing)"
    if not os.path.exists(f"/lib/modules/{platform.release()}/build") and not os.environ.get(
        "BCC_KERNEL_SOURCE"
    ):
        return "no kernel headers (run scripts/setup.sh)"
    try:
        import bcc  # noqa: F401
    except Exception as exc:  # bcc raises various errors when libbcc is missing
        return f"bcc cannot be imported: {exc}"
    return None
