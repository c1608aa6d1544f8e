"""Consumer of a BPF_MAP_TYPE_RINGBUF over mmap, without libbpf or bcc.

Layout (kernel/bpf/ringbuf.c): page 0 holds consumer_pos (we write it); from offset PAGE_SIZE
the producer page (producer_pos) and then the data area mapped twice, so a record that wraps
is contiguous. Each record starts with an 8-byte header: u32 len (bit 31 BUSY, bit 30 DISCARD)
and u32 page offset; records are 8-byte aligned.

Positions and headers are read and written as whole aligned words through typed memoryviews
(one 8-byte store for consumer_pos). ``struct.pack_into`` must not be used for that: it writes
byte by byte, so the kernel could read a torn consumer_pos (measured: 0 in about 1 of 1000
stores), think the buffer full and fail reservations. Plain loads and stores are ordered
enough on x86-64 (TSO); other architectures would need acquire/release barriers.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import threading
from collections.abc import Callable

from collector.bpf.syscall import MAP_TYPE_RINGBUF, Map

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8


class RingBuffer:
    """Reads records of one ringbuf map. ``poll(timeout)`` waits for data (epoll);
    ``drain(callback)`` hands every committed record (a memoryview valid only during the
    callback) and advances consumer_pos; a record whose callback raises is skipped (counted
    in ``failed``) and the exception propagates. Not thread-safe: one reader thread."""

    def __init__(self, ringbuf_map: Map) -> None:
        if ringbuf_map.map_type != MAP_TYPE_RINGBUF:
            raise ValueError(
                f"map {ringbuf_map.name} is not a ringbuf (type {ringbuf_map.map_type})"
            )
        self._map = ringbuf_map
        self.size = ringbuf_map.max_entries
        self._mask = self.size - 1
        page = mmap.PAGESIZE
        fd = ringbuf_map.fd
        self._consumer = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, 0)
        self._producer = mmap.mmap(
            fd, page + 2 * self.size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page
        )
        self._data_off = page
        self._view = memoryview(self._producer)
        self._cons_pos = memoryview(self._consumer).cast("Q")  # [0]: consumer_pos
        self._prod_pos = self._view.cast("Q")  # [0]: producer_pos
        self._words = self._view.cast("I")  # record headers, 8-byte aligned
        self._epoll = select.epoll()
        self._epoll.register(fd, select.EPOLLIN)
        # Lets another thread interrupt poll() (shutdown) without waiting for the timeout.
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._epoll.register(self._wake_fd, select.EPOLLIN)
        self._close_lock = threading.Lock()  # wake() from another thread vs. close()
        self.discarded = 0
        self.failed = 0  # records whose callback raised (skipped)

    def poll(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for data; True when the ringbuf signalled."""
        events = self._epoll.poll(timeout)
        ready = False
        for fd, _ in events:
            if fd == self._wake_fd:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self._wake_fd)
            else:
                ready = True
        return ready

    def wake(self) -> None:
        """Make a concurrent ``poll`` return now (thread-safe; a no-op once closed)."""
        with self._close_lock:
            if not self._epoll.closed:
                os.eventfd_write(self._wake_fd, 1)

    def pending(self) -> int:
        """Bytes between consumer and producer positions."""
        return self._prod_pos[0] - self._cons_pos[0]

    def drain(self, callback: Callable[[memoryview], None], limit: int = 0) -> int:
        """Hand each committed record to ``callback``; stop at a busy record (being written)
        or after ``limit`` records (0: no limit). Returns the number of records handed."""
        cons = self._cons_pos[0]
        n = 0
        view, words, data_off, mask = self._view, self._words, self._data_off, self._mask
        prod = self._prod_pos[0]
        while True:
            if cons >= prod:
                prod = self._prod_pos[0]  # more may have come while we read
                if cons >= prod:
                    break
            off = data_off + (cons & mask)
            length = words[off >> 2]
            if length & BUSY_BIT:
                break
            size = length & ~(BUSY_BIT | DISCARD_BIT)
            if length & DISCARD_BIT:
                self.discarded += 1
            else:
                try:
                    callback(view[off + HEADER_SIZE : off + HEADER_SIZE + size])
                except BaseException:
                    # Past the record that raised: the next drain must not fail on it again.
                    self.failed += 1
                    self._cons_pos[0] = cons + ((size + HEADER_SIZE + 7) & ~7)
                    raise
                n += 1
            cons += (size + HEADER_SIZE + 7) & ~7
            # Publish progress per record so the producer can reuse space early.
            self._cons_pos[0] = cons
            if limit and n >= limit:
                break
        return n

    @property
    def closed(self) -> bool:
        return self._epoll.closed

    def close(self) -> None:
        """Unmap and close the epoll/eventfd (the map fd belongs to the LoadedProgram)."""
        with self._close_lock:
            if self._epoll.closed:
                return
            self._epoll.close()
            os.close(self._wake_fd)
        self._cons_pos.release()
        self._consumer.close()
        try:
            for v in (self._words, self._prod_pos, self._view):
                v.release()
            self._producer.close()
        except BufferError:  # a callback kept a record view: the GC unmaps it later
            pass
