"""The symbolize processor: RawBatch -> SymbolizedBatch, off the event loop."""

from __future__ import annotations

import asyncio
import logging
import threading

from collector.component import CreateSettings
from collector.host import Host
from collector.model import RawBatch, SymbolizedBatch
from collector.telemetry import Counters
from processors.symbolize.config import SymbolizeConfig
from processors.symbolize.symbolizer import Symbolizer


class SymbolizeProcessor:
    def __init__(self, settings: CreateSettings, config: SymbolizeConfig) -> None:
        self.id = settings.id
        self.log: logging.Logger = settings.logger
        self.config = config
        self._symbolizer: Symbolizer | None = None
        # One batch at a time: the caches are not shared between threads.
        self._lock = threading.Lock()

    async def start(self, host: Host) -> None:
        self._symbolizer = Symbolizer(host.processes, self.config, host.counters, self.id, self.log)
        if self.config.kernel:
            # kallsyms takes ~0.2 s to parse: do it now, off the loop, not on the first batch.
            await asyncio.to_thread(self._with_lock, self._symbolizer.load_kernel)

    def _with_lock(self, fn, *args):  # type: ignore[no-untyped-def]
        with self._lock:
            return fn(*args)

    async def process(self, batch: RawBatch) -> SymbolizedBatch | None:
        sym = self._symbolizer
        if sym is None:
            sym = self._symbolizer = Symbolizer(
                _standalone_table(), self.config, Counters(), self.id, self.log
            )
        return await asyncio.to_thread(self._with_lock, sym.symbolize, batch)

    async def shutdown(self) -> None:
        sym, self._symbolizer = self._symbolizer, None
        if sym is not None:
            await asyncio.to_thread(self._with_lock, sym.close)


def _standalone_table():  # type: ignore[no-untyped-def]
    """A process table for use without start() (tests, or a misused component)."""
    from collector.proc import ProcessTable

    return ProcessTable(Counters())
