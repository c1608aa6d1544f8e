"""Services the runtime shares with every component (like the OTel Collector's Host)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, TypeVar

from collector.telemetry import Counters, MemoryPressure

if TYPE_CHECKING:
    from collector.proc import ProcessTable

T = TypeVar("T")
log = logging.getLogger("collector.host")


class _Shared:
    __slots__ = ("close", "refs", "value")

    def __init__(self, value: Any, close: Callable[[Any], None] | None) -> None:
        self.value = value
        self.close = close
        self.refs = 0


class Host:
    """Shared by receivers and processors so they never import each other.

    ``processes`` is the per-process mapping snapshot store: receivers ask it to snapshot a
    process as soon as they see it (while it lives), the symbolizer reads the snapshots.
    ``shared``/``release`` is a small registry of services that components of the same kind
    share (e.g. one symbolizer's tables for every pipeline), reference-counted by key.
    ``pressure`` is the collector-wide memory signal (set by memory_limiter; receivers read
    it to take in less while it is raised).
    """

    def __init__(self, counters: Counters | None = None) -> None:
        self.counters = counters or Counters()
        self.pressure = MemoryPressure()
        self._processes: ProcessTable | None = None
        self._fatal: Callable[[str, str], None] | None = None
        self.fatal_error: str | None = None
        self._shared: dict[Hashable, _Shared] = {}
        self._shared_lock = threading.RLock()  # a factory may take another shared service

    def shared(
        self,
        key: Hashable,
        factory: Callable[[], T],
        close: Callable[[T], None] | None = None,
    ) -> T:
        """The one object under ``key``, made by ``factory`` on first use; every call takes
        a reference that ``release(key)`` returns. ``close`` runs when the last one is
        released (or at ``close_shared``). Keys must include every setting the object
        depends on, so components with different settings never share by mistake."""
        with self._shared_lock:
            entry = self._shared.get(key)
            if entry is None:
                entry = self._shared[key] = _Shared(factory(), close)
            entry.refs += 1
            return entry.value  # type: ignore[no-any-return]

    def release(self, key: Hashable) -> None:
        with self._shared_lock:
            entry = self._shared.get(key)
            if entry is None:
                return
            entry.refs -= 1
            if entry.refs > 0:
                return
            del self._shared[key]
        self._close_entry(key, entry)

    def close_shared(self) -> None:
        """At shutdown: close whatever a component did not release."""
        with self._shared_lock:
            left = list(self._shared.items())
            self._shared.clear()
        for key, entry in left:
            self._close_entry(key, entry)

    def _close_entry(self, key: Hashable, entry: _Shared) -> None:
        if entry.close is None:
            return
        try:
            entry.close(entry.value)
        except Exception:
            log.exception("closing a shared service failed key=%r", key)

    def on_fatal(self, callback: Callable[[str, str], None]) -> None:
        self._fatal = callback

    def report_fatal(self, component_id: str, message: str) -> None:
        """A component cannot go on (e.g. its reader thread died): stop the collector.

        Safe to call from any thread; the runtime shuts down and exits with a runtime error.
        """
        if self.fatal_error is None:
            self.fatal_error = f"{component_id}: {message}"
        if self._fatal is not None:
            self._fatal(component_id, message)

    @property
    def processes(self) -> ProcessTable:
        if self._processes is None:
            from collector.proc import ProcessTable

            self._processes = ProcessTable(self.counters)
        return self._processes


class ScopedCounters:
    """Counters a component adds under its own id land under ``<scope>/<id>``.

    A receiver and an exporter may both be called ``otlp``; scoping keeps their counters
    apart in the collector's reports (``receivers/otlp`` vs ``exporters/otlp``).
    """

    def __init__(self, base: Counters, scope: str) -> None:
        self._base = base
        self._scope = scope

    def add(self, component: str, name: str, n: int = 1) -> None:
        self._base.add(f"{self._scope}/{component}", name, n)

    def get(self, component: str, name: str) -> int:
        return self._base.get(f"{self._scope}/{component}", name)

    def gauge(self, component: str, name: str, read: Callable[[], float] | None) -> None:
        self._base.gauge(f"{self._scope}/{component}", name, read)

    def drop_gauge(self, component: str, name: str, read: Callable[[], float]) -> None:
        self._base.drop_gauge(f"{self._scope}/{component}", name, read)

    def snapshot(self) -> dict[str, dict[str, int]]:
        return self._base.snapshot()


class ScopedHost(Host):
    """What the runtime hands one kind of component: the shared services, scoped counters."""

    def __init__(self, parent: Host, scope: str) -> None:  # no super().__init__: all shared
        self._parent = parent
        self._scope = scope
        self.counters = ScopedCounters(parent.counters, scope)  # type: ignore[assignment]
        self.pressure = parent.pressure

    @property
    def processes(self) -> ProcessTable:
        return self._parent.processes

    def shared(
        self,
        key: Hashable,
        factory: Callable[[], T],
        close: Callable[[T], None] | None = None,
    ) -> T:
        return self._parent.shared(key, factory, close)

    def release(self, key: Hashable) -> None:
        self._parent.release(key)

    def close_shared(self) -> None:
        self._parent.close_shared()

    @property
    def fatal_error(self) -> str | None:  # type: ignore[override]
        return self._parent.fatal_error

    def on_fatal(self, callback: Callable[[str, str], None]) -> None:
        self._parent.on_fatal(callback)

    def report_fatal(self, component_id: str, message: str) -> None:
        self._parent.report_fatal(f"{self._scope}/{component_id}", message)
