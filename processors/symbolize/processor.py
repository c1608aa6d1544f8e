"""The symbolize processor: RawBatch -> SymbolizedBatch, off the event loop.

The symbol tables live in a SharedSymbolizer that the host hands every processor with the
same settings (see shared.py): two pipelines load kallsyms and each binary once.
"""

from __future__ import annotations

import asyncio
import logging

from collector.component import CreateSettings
from collector.host import Host
from collector.model import RawBatch, SymbolizedBatch
from processors.symbolize.config import SymbolizeConfig
from processors.symbolize.shared import SharedSymbolizer, acquire


class SymbolizeProcessor:
    def __init__(self, settings: CreateSettings, config: SymbolizeConfig) -> None:
        self.id = settings.id
        self.log: logging.Logger = settings.logger
        self.config = config
        self._host: Host | None = None
        self._key: object = None
        self._shared: SharedSymbolizer | None = None

    @property
    def symbolizer(self) -> SharedSymbolizer | None:
        """What this processor symbolizes with (shared with equal-settings processors)."""
        return self._shared

    async def start(self, host: Host) -> None:
        self._acquire(host)
        if self.config.kernel:
            # kallsyms takes ~0.2 s to parse: do it now, off the loop, not on the first batch.
            shared = self._shared
            assert shared is not None
            await asyncio.to_thread(shared.run, shared.symbolizer.load_kernel)

    def _acquire(self, host: Host) -> SharedSymbolizer:
        self._host = host
        self._key, self._shared = acquire(host, self.config, self.id, self.log)
        return self._shared

    async def process(self, batch: RawBatch) -> SymbolizedBatch | None:
        # Without start() (tests, a misused component): a private host of its own.
        shared = self._shared or self._acquire(Host())
        return await asyncio.to_thread(shared.run, shared.symbolizer.symbolize, batch)

    async def shutdown(self) -> None:
        host, self._host = self._host, None
        shared, self._shared = self._shared, None
        if host is not None and shared is not None:
            # The last holder closes the binaries' descriptors: a file read, off the loop.
            await asyncio.to_thread(host.release, self._key)
