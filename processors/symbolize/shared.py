"""One symbolizer per collector, shared through the host.

Processors with equal settings (e.g. one ``symbolize`` listed in a cpu and an off-CPU
pipeline) share one Symbolizer: its kernel table, loaded binaries, interned frames and
per-process stack caches. Processors with different settings keep their own Symbolizer
(binaries are read under per-config budgets, names demangled or not) but share the kernel
symbol table, the largest piece (~120k symbols). Each Symbolizer is used under one lock by
every processor holding it, as the caches are not thread-safe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from collector.elf import SymbolTable
from collector.host import Host
from processors.symbolize.config import SymbolizeConfig
from processors.symbolize.kernel import load_kallsyms
from processors.symbolize.symbolizer import Symbolizer

T = TypeVar("T")
KERNEL_KEY = ("processors.symbolize", "kallsyms")


class KernelTable:
    """/proc/kallsyms parsed once, on first use, for every symbolizer of the collector."""

    def __init__(self, loader: Callable[[], SymbolTable | None] = load_kallsyms) -> None:
        self._loader = loader
        self._lock = threading.Lock()
        self._loaded = False
        self._table: SymbolTable | None = None
        self.loads = 0

    def get(self) -> SymbolTable | None:
        with self._lock:
            if not self._loaded:
                self._loaded = True
                self.loads += 1
                self._table = self._loader()
            return self._table


class SharedSymbolizer:
    """A Symbolizer, the lock its users hold, and the shared kernel table it reads."""

    def __init__(self, host: Host, config: SymbolizeConfig, cid: str, log: logging.Logger) -> None:
        self._host = host
        self.kernel = host.shared(KERNEL_KEY, KernelTable)
        self.symbolizer = Symbolizer(
            host.processes, config, host.counters, cid, log, kernel_loader=self._load_kernel
        )
        self.lock = threading.Lock()
        self._cid = cid

    def _load_kernel(self) -> SymbolTable | None:
        before = self.kernel.loads
        table = self.kernel.get()
        if self.kernel.loads != before:
            self._host.counters.add(self._cid, "kallsyms_loads")
        return table

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        with self.lock:
            return fn(*args)

    def close(self) -> None:
        self.run(self.symbolizer.close)
        self._host.release(KERNEL_KEY)


def acquire(
    host: Host, config: SymbolizeConfig, cid: str, log: logging.Logger
) -> tuple[tuple[str, SymbolizeConfig], SharedSymbolizer]:
    """The symbolizer for ``config`` (made on first use); release the key at shutdown.

    Counters of a shared symbolizer are kept under the first processor's id."""
    key = ("processors.symbolize", config)
    shared = host.shared(key, lambda: SharedSymbolizer(host, config, cid, log), _close)
    return key, shared


def _close(shared: SharedSymbolizer) -> None:
    shared.close()
