"""Reads a BPF_STACK_TRACE map: stack id -> tuple of addresses, leaf first.

Stack ids are stable until the id is deleted (programs must not use BPF_F_REUSE_STACKID),
so resolved stacks are cached and the same tuple object is returned for the same id.
The map fills up as distinct stacks accumulate (new stacks then fail with -EEXIST or -ENOMEM,
counted by the BPF side); ``maybe_clear`` empties map and cache together, right after a drain,
once the cache holds ``clear_fraction`` of the map's capacity.
"""

from __future__ import annotations

import struct

from collector.bpf.syscall import MAP_TYPE_STACK_TRACE, Map

_KEY = struct.Struct("<I")


class StackReader:
    def __init__(self, stack_map: Map, clear_fraction: float = 0.75) -> None:
        if stack_map.map_type != MAP_TYPE_STACK_TRACE:
            raise ValueError(f"map {stack_map.name} is not a stack trace map")
        self._map = stack_map
        self._depth = stack_map.value_size // 8
        self._unpack = struct.Struct(f"<{self._depth}Q").unpack
        self._cache: dict[int, tuple[int, ...]] = {}
        self._threshold = max(1, int(stack_map.max_entries * clear_fraction))
        self.clears = 0  # how many times the map was emptied
        self.lost = 0  # ids that were gone when we looked them up

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, stack_id: int) -> tuple[int, ...] | None:
        """Addresses for ``stack_id`` (leaf first, without the zero padding), or None when
        the id is not in the map (cleared before we read it; counted in ``lost``)."""
        stack = self._cache.get(stack_id)
        if stack is not None:
            return stack
        raw = self._map.lookup(_KEY.pack(stack_id))
        if raw is None:
            self.lost += 1
            return None
        addrs = self._unpack(raw)
        try:
            stack = addrs[: addrs.index(0)]
        except ValueError:
            stack = addrs
        self._cache[stack_id] = stack
        return stack

    def maybe_clear(self) -> bool:
        """Empty the map and the cache when the cache reached the threshold. Call only after
        draining every event that refers to the current ids. Returns True when cleared."""
        if len(self._cache) < self._threshold:
            return False
        self.clear()
        return True

    def clear(self) -> None:
        self._map.clear()
        self._cache.clear()
        self.clears += 1
