"""The real collector CLI, with one ring buffer made to fail: for tests of run-time failures.

``python -m tests.receivers.cpu.faulty_cli --config FILE`` runs ``collector.cli.main`` after
wrapping ``RingBuffer.poll``: the ring buffer created first (the first receiver started) raises
OSError(EIO) from its poll call number FAIL_POLL_AFTER + 1 on. Everything else is real: the
BPF program keeps sampling, the pipeline and exporters run as in production.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

from collector import cli
from collector.bpf.ringbuf import RingBuffer

FAIL_AFTER = int(os.environ["FAIL_POLL_AFTER"])
_real_init = RingBuffer.__init__
_real_poll = RingBuffer.poll
_created: list[RingBuffer] = []
_calls = [0]


def _init(self: RingBuffer, *args: Any, **kwargs: Any) -> None:
    _real_init(self, *args, **kwargs)
    _created.append(self)


def _poll(self: RingBuffer, timeout: float) -> bool:
    if self is _created[0]:
        _calls[0] += 1
        if _calls[0] > FAIL_AFTER:
            raise OSError(errno.EIO, "injected poll failure")
    return _real_poll(self, timeout)


RingBuffer.__init__ = _init  # type: ignore[method-assign]
RingBuffer.poll = _poll  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(cli.main())
