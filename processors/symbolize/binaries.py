"""The symbolizer's loaded binaries: by file identity, least recently used first out, bounded
by count (``max_binaries``) and by the bytes they retain (``max_binary_memory``); a file's
trouble (malformed, unreadable, over its budget) is counted and logged once per file."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from collector.model import Function
from collector.proc import PinnedFile
from processors.symbolize.binary import Binary
from processors.symbolize.config import SymbolizeConfig
from processors.symbolize.symcache_store import SymCacheStore

# Binaries found malformed, by file identity (never by build id: that is bytes inside the file,
# so a hostile copy could claim a good binary's id and blind it). Bounded like every cache.
_MAX_BAD = 16384
_MAX_LOGGED = 1000  # distinct bad binaries logged; past it they are only counted


class BinaryCache:
    def __init__(
        self,
        config: SymbolizeConfig,
        functions: dict[tuple[str, str, str, int], Function],
        count: Callable[[str, int], None],
        log: logging.Logger,
        store: SymCacheStore | None,
    ) -> None:
        self._config = config
        self._functions = functions  # shared with the symbolizer: one Function per name
        self._add = count
        self._log = log
        self._store = store
        self._binaries: OrderedDict[tuple[int, int, int, int], Binary] = OrderedDict()
        # identity -> why, for unparsable files ("" for others already reported)
        self._bad: OrderedDict[tuple[int, int, int, int], str] = OrderedDict()
        self._logged = 0
        self._held = 0  # bytes the loaded binaries retain, as of the last fit_memory
        self._peak = 0
        self.hits = 0  # cache hits not yet counted (binary_cache_hits): see take_hits

    def take_hits(self) -> int:
        """Hits since the last call: get() runs per frame, so they are counted per batch."""
        n, self.hits = self.hits, 0
        return n

    def held(self) -> int:
        """Bytes the loaded binaries retained when last checked (after a load or a batch)."""
        return self._held

    def close(self) -> None:
        for b in self._binaries.values():
            b.close()
        self._binaries.clear()
        self._held = 0

    def _count(self, name: str) -> None:
        self._add(name, 1)

    def _count_n(self, name: str, n: int) -> None:
        self._add(name, n)

    def get(self, pinned: PinnedFile) -> Binary | None:
        """The binary behind ``pinned``, loaded (and reported) at first use."""
        key = pinned.identity
        b = self._binaries.get(key)
        if b is not None:
            self._binaries.move_to_end(key)
            self.hits += 1  # per frame: counted by the symbolizer once per batch
            return b
        self._count("binary_cache_misses")
        known_bad = self._bad.get(key, "")
        b = Binary(
            pinned, self._functions, self._config, self._count, self._log, known_bad, self._store
        )
        if not known_bad:
            self._report(key, b)
        self._binaries[key] = b
        while len(self._binaries) > self._config.max_binaries:
            _, old = self._binaries.popitem(last=False)
            old.close()
            self._count("binary_cache_evicted")
        self.fit_memory(b)
        return b

    def fit_memory(self, keep: Binary | None) -> None:
        """Evict least recently used binaries while they retain more than max_binary_memory.

        ``keep`` (the one just loaded, last in the order) stays for the batch that needs it
        even when it alone is over the budget; the check at the batch's end drops it then."""
        binaries = self._binaries
        total = sum(b.retained_bytes() for b in binaries.values())
        if total > self._peak:  # a counter that reads as the peak: it only ever grows
            self._count_n("binary_memory_peak_bytes", total - self._peak)
            self._peak = total
        budget = self._config.max_binary_memory
        while total > budget and binaries:
            key = next(iter(binaries))
            old = binaries[key]
            if old is keep:
                if len(binaries) == 1:
                    self._count("binary_over_memory_budget")
                break
            del binaries[key]
            total -= old.retained_bytes()
            old.close()
            self._count("binary_memory_evicted")
        self._held = total

    def _report(self, key: tuple[int, int, int, int], b: Binary) -> None:
        """Count a freshly read binary's trouble and log it, once per file."""
        if not (b.malformed or b.error or b.truncated) or key in self._bad:
            return  # fine, or read again after eviction: counted and logged the first time
        # Only an unparsable file is not read again; a degraded, unreadable or over-budget one
        # is (its trouble may pass), but not counted or logged again.
        self._bad[key] = b.error if b.malformed else ""
        while len(self._bad) > _MAX_BAD:
            self._bad.popitem(last=False)
        if b.malformed:
            self._count("binary_malformed")
            if b.error:
                self._log_once(
                    "malformed binary path=%s error=%r (its frames stay as offsets)",
                    b.path,
                    b.error,
                )
            else:
                self._log_once(
                    "malformed binary path=%s problems=%r (names from %s: %d functions)",
                    b.path,
                    "; ".join(b.problems),
                    b.source or "nowhere",
                    len(b.symbols or ()),
                )
        elif b.error and not b.truncated:
            self._count("binary_unreadable")
            self._log_once("cannot read binary path=%s error=%s", b.path, b.error)
        if b.truncated:
            self._count("binary_budget_exceeded")
            self._log_once(
                "binary over its budget path=%s symbols=%d why=%r (the rest stays offsets)",
                b.path,
                len(b.symbols or ()),
                b.truncated,
            )

    def _log_once(self, msg: str, *args: object) -> None:
        # Already one line per bad file (and at most _MAX_LOGGED of them): the collector's
        # per-template rate limit (collector/logs.py) would otherwise keep only the first
        # file a minute, and which binaries are bad is what the operator needs to see.
        self._logged += 1
        if self._logged <= _MAX_LOGGED:
            self._log.warning(msg, *args, extra={"summary": True})
        elif self._logged == _MAX_LOGGED + 1:
            self._log.warning("more bad binaries are counted but no longer logged")
