"""The open-file limit: raised to the hard limit at start, and what it leaves for pins.

Like Go's runtime (which the Go-based profilers inherit), the collector raises its soft
RLIMIT_NOFILE to the hard limit at start: systemd's default soft limit of 1024 is far below
what pinning every mapped binary of a busy host needs, while the hard limit (524288 under
systemd) is not. What the limit then allows bounds the process table's pinned files.
"""

from __future__ import annotations

import logging
import resource
import threading

_lock = threading.Lock()
_done: tuple[int, int] | None = None
# Descriptors kept free for everything that is not a pin: BPF maps and programs, sockets,
# the symbolizer's own copies of binaries, debug files, logs, the loader child's pipes.
RESERVED_FDS = 64
PIN_SHARE = 0.5  # of what is left: the symbolizer duplicates roughly one fd per pin


def raise_nofile_limit(log: logging.Logger) -> tuple[int, int]:
    """Raise the soft limit to the hard one once per process (logged); (soft, hard)."""
    global _done
    with _lock:
        if _done is not None:
            return _done
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
                log.info("open-file limit raised soft=%d to hard=%d", soft, hard)
                soft = hard
            except (ValueError, OSError) as exc:
                log.warning("open-file limit stays soft=%d hard=%d: %s", soft, hard, exc)
        else:
            log.info("open-file limit soft=hard=%d", soft)
        _done = (soft, hard)
        return _done


def pin_budget(setting: int) -> int:
    """Pinned files allowed: the setting, or less when the open-file limit is low."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return setting
    return max(8, min(setting, int((soft - RESERVED_FDS) * PIN_SHARE)))
