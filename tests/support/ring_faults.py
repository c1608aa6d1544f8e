"""A fault in a live receiver's ring buffer, for the reader failure tests of every
collector.bpf.reader.RingReader (cpu, heap, go_runtime): the one fake they share, since no
kernel breaks a ring buffer on demand; the program, its maps and its targets stay real."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any


def fail_ring(receiver: Any, method: str, fail: Callable[[int], bool]) -> None:
    """Wrap ``receiver``'s live ring buffer's ``method`` (poll, drain): call n (from 1)
    raises OSError(EIO, "injected <method> failure <n>") when fail(n), else runs as before."""
    rb = receiver._ringbuf
    real = getattr(rb, method)
    calls = [0]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if fail(calls[0]):
            raise OSError(errno.EIO, f"injected {method} failure {calls[0]}")
        return real(*args, **kwargs)

    setattr(rb, method, wrapped)
