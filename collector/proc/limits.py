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
# debug files, logs, the loader child's pipes, the symbolizer's short-lived dup of a pin
# (it holds none between reads). Half the limit at most, so a tiny limit still pins some.
RESERVED_FDS = 64
PIN_SHARE = 0.5  # of what is left: headroom for descriptors opened while running


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
    """Pins that may hold a descriptor at once (the rest are parked and reopened on use):
    the setting, or less when the open-file limit is low."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return setting
    left = soft - min(RESERVED_FDS, soft // 2)
    return max(4, min(setting, int(left * PIN_SHARE)))
