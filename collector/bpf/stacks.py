"""Reads a BPF_STACK_TRACE map: stack id -> tuple of addresses, leaf first.

Stack ids are stable until the id is deleted (programs must not use BPF_F_REUSE_STACKID),
so resolved stacks are cached and the same tuple object is returned for the same id.
The map fills up as distinct stacks accumulate (new stacks then fail with -EEXIST or -ENOMEM,
counted by the BPF side); ``maybe_clear`` empties map and cache together, right after a drain,
once the cache holds ``clear_fraction`` of the map's capacity.

Clearing loses nothing: events whose stacks were walked before the map was emptied are read
after it (sampled during the clear, or an off-CPU wait that began before it), and their ids
may be gone or already reused. So a clear keeps, for every id it deletes, the stack the id
held and when it was deleted (the clock before and after its delete syscall, CLOCK_BOOTTIME
like bpf_ktime_get_boot_ns). ``get(id, stamp_ns)`` then answers with the stack the id held
when the stack was walked, which is within ``walk_window`` of the event's stamp (the cpu
program stamps just before it walks, the offcpu program just after). Only a walk that may have
overlapped its id's delete syscall, whose bucket now holds another stack, is ambiguous:
counted in ``lost``, never guessed. What is kept is bounded by the map: one stack per id, the
one its last deletion removed.
"""

from __future__ import annotations

import struct
import time
from typing import NamedTuple

from collector.bpf.syscall import MAP_TYPE_STACK_TRACE, Map

_KEY = struct.Struct("<I")
_NEVER = -(1 << 63)
_NEVER_AFTER = 1 << 63
# The walks take a few microseconds in the same run of the program as the stamp; the bound
# leaves room for a short interrupt between them (see the README's caveats).
MARGIN_NS = 20_000
CLEAR_STEP = 256  # fewest ids clear_step() deletes
STAMP_BEFORE_WALK = (0, MARGIN_NS)  # walked at most MARGIN_NS after the stamp
STAMP_AFTER_WALK = (-MARGIN_NS, 0)


def _boot_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class _Deleted(NamedTuple):
    """The last deletion of an id: it held ``stack`` for walks from ``since`` (its previous
    deletion, or _NEVER) until the delete syscall between ``before`` and ``after``."""

    since: int
    before: int
    after: int
    stack: tuple[int, ...]


class StackReader:
    def __init__(
        self,
        stack_map: Map,
        clear_fraction: float = 0.75,
        walk_window: tuple[int, int] = STAMP_BEFORE_WALK,
    ) -> None:
        if stack_map.map_type != MAP_TYPE_STACK_TRACE:
            raise ValueError(f"map {stack_map.name} is not a stack trace map")
        self._map = stack_map
        self._depth = stack_map.value_size // 8
        self._unpack = struct.Struct(f"<{self._depth}Q").unpack
        self._cache: dict[int, tuple[int, ...]] = {}
        self._deleted: dict[int, _Deleted] = {}
        self._walk_lo, self._walk_hi = walk_window
        self._current_from = _NEVER  # walks after this found only ids made since the clear
        self._to_delete: list[bytes] | None = None  # ids a clear in progress has yet to delete
        self._step = CLEAR_STEP
        self._old_cache: dict[int, tuple[int, ...]] = {}  # the cache when that clear began
        self._threshold = max(1, int(stack_map.max_entries * clear_fraction))
        self.clears = 0  # how many times the map was emptied
        self.lost = 0  # ids whose stack could not be known when we looked them up

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, stack_id: int, stamp_ns: int | None = None) -> tuple[int, ...] | None:
        """Addresses for ``stack_id`` (leaf first, without the zero padding), or None when it
        cannot be known (counted in ``lost``). ``stamp_ns``: the event's stamp
        (CLOCK_BOOTTIME) that places its walk; None means walked after the last clear."""
        if stamp_ns is None or stamp_ns + self._walk_lo > self._current_from:
            stack = self._current(stack_id)
        else:
            stack = self._walked_before_clear(stack_id, stamp_ns)
        if stack is None:
            self.lost += 1
        return stack

    def _walked_before_clear(self, stack_id: int, stamp: int) -> tuple[int, ...] | None:
        d = self._deleted.get(stack_id)
        if d is None:  # never deleted: the map holds what that walk made
            return self._current(stack_id)
        earliest, latest = stamp + self._walk_lo, stamp + self._walk_hi
        if earliest <= d.since:  # maybe before an earlier deletion: that stack is not kept
            return None
        if latest < d.before:
            return d.stack
        current = self._current(stack_id)
        if earliest > d.after:  # made again after the deletion
            return current
        # Walked while its id was deleted: fine if both sides of the deletion agree.
        return d.stack if current is None or current == d.stack else None

    def _current(self, stack_id: int) -> tuple[int, ...] | None:
        stack = self._cache.get(stack_id)
        if stack is None:
            stack = self._old_cache.get(stack_id)  # a clear has yet to delete it
            if stack is not None:
                return stack
            raw = self._map.lookup(_KEY.pack(stack_id))
            if raw is None:
                return None
            stack = self._cache[stack_id] = self._decode(raw)
        return stack

    def _decode(self, raw: bytes) -> tuple[int, ...]:
        addrs = self._unpack(raw)
        try:
            return addrs[: addrs.index(0)]
        except ValueError:
            return addrs

    def deleted_at(self, stack_id: int) -> tuple[int, int] | None:
        """When the last clear deleted ``stack_id``: CLOCK_BOOTTIME ns before and after its
        delete syscall, or None."""
        d = self._deleted.get(stack_id)
        return None if d is None else (d.before, d.after)

    def full(self) -> bool:
        """The cache holds ``clear_fraction`` of the map's capacity: time to clear."""
        return len(self._cache) >= self._threshold

    @property
    def clearing(self) -> bool:
        """A clear was started and not finished (see ``clear_step``)."""
        return self._to_delete is not None

    def maybe_clear(self) -> bool:
        """Empty the map and the cache when ``full()``. Call right after a drain. Returns
        True when cleared."""
        if not self.full():
            return False
        self.clear()
        return True

    def clear(self) -> None:
        """Empty the map now (``start_clear`` and every step at once)."""
        self.start_clear()
        while not self.clear_step(1 << 30):
            pass

    def start_clear(self) -> None:
        """Begin emptying the map; ``clear_step`` deletes it id by id, so that a caller can
        keep reading events in between (a clear of thousands of ids takes 25-200 ms). Until
        it is done every lookup goes by its id's deletion time."""
        if self._to_delete is not None:
            return
        self._to_delete = self._map.keys()  # a snapshot: ids made while we delete stay
        self._step = max(CLEAR_STEP, len(self._to_delete) // 8 + 1)
        self._old_cache, self._cache = self._cache, {}
        self._current_from = _NEVER_AFTER

    def clear_step(self, limit: int = 0) -> bool:
        """Delete up to ``limit`` more ids (0: an eighth of the clear's ids, at least
        CLEAR_STEP), so a clear is done in at most 8 steps; True when it is done."""
        keys = self._to_delete
        if keys is None:
            return True
        limit = limit or self._step
        deleted, old = self._deleted, self._old_cache
        while keys and limit > 0:
            limit -= 1
            key = keys.pop()
            stack_id = _KEY.unpack(key)[0]
            stack = old.pop(stack_id, None)
            if stack is None:
                stack = self._current(stack_id)  # not read yet: looked up first
            before = _boot_ns()
            self._map.delete(key)
            after = _boot_ns()
            self._cache.pop(stack_id, None)  # looked up during the clear, before this delete
            if stack is not None:
                prev = deleted.get(stack_id)
                if prev is None:
                    since = _NEVER
                else:  # the same stack on both sides of the last deletion: still valid
                    since = prev.since if prev.stack == stack else prev.after
                deleted[stack_id] = _Deleted(since, before, after, stack)
        if keys:
            return False
        self._to_delete = None
        self._old_cache = {}
        self._current_from = _boot_ns()
        self.clears += 1
        return True
