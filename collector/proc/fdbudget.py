"""The open descriptors that pins hold, bounded: least recently used closed first.

A closed ("parked") pin keeps its identity and the kernel references it was opened through,
and opens again on its next use (PinnedFile.dup); so under a low open-file limit every binary
stays readable, at the price of an open per reuse after parking.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from collector.telemetry import Counters

if TYPE_CHECKING:
    from collector.proc.pinned import PinnedFile

COUNTER_GROUP = "processes"


class FdBudget:
    """At most ``limit`` pins hold a descriptor; ``touch`` marks one used (and parks others)."""

    def __init__(self, limit: int, counters: Counters) -> None:
        self.limit = max(1, limit)
        self.counters = counters
        self._lock = threading.Lock()
        self._open: OrderedDict[int, PinnedFile] = OrderedDict()  # id(pin) -> pin
        self.on_first_park: Callable[[], None] | None = None  # the table logs it once
        self._parked_once = False

    def __len__(self) -> int:
        return len(self._open)

    def touch(self, pin: PinnedFile) -> None:
        """``pin`` holds a descriptor and was just used: park the least recently used others
        while over the limit. Called without the pin's own lock (parking takes others')."""
        victims = []
        with self._lock:
            if pin.fd < 0:  # closed or parked meanwhile by another thread
                return
            self._open[id(pin)] = pin
            self._open.move_to_end(id(pin))
            while len(self._open) > self.limit:
                _, v = self._open.popitem(last=False)
                victims.append(v)
        for v in victims:
            if v.park():
                self.counters.add(COUNTER_GROUP, "pin_parked")
        if victims and not self._parked_once:
            self._parked_once = True
            if self.on_first_park is not None:
                self.on_first_park()

    def forget(self, pin: PinnedFile) -> None:
        with self._lock:
            self._open.pop(id(pin), None)
