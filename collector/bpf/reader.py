"""The part every ring-buffer BPF receiver shares: its reader thread, failure rules, counters
and the hand-over of batches to the event loop (StackReceiver for cpu and offcpu,
receivers/heap, receivers/go_runtime).

A receiver loads its program (``_load``), sets up its maps and targets (``_setup``), and says
how to read a drain's worth of records (``_drain``) and what a batch is (``_take_batches``).
The reader thread waits on the ring buffer until the next batch is due (``_poll_timeout``),
drains it, and hands on batches every ``interval`` (``_after_drain``). Shutdown detaches the
programs first (``_detach``), then reads what they left (``_last_read``), so every record the
kernel produced is handed on, and closes every fd (``_close``).

A reader that fails is a component failure. Anything that escapes the loop (poll included),
or MAX_FAILED_DRAINS drains in a row that fail, is logged once with its traceback, counted
(``receiver_failed``), what was read is handed on, and ``host.report_fatal`` stops the
collector, or with ``optional: true`` only this receiver stops (program detached, fds closed).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from collector.bpf.loader import LoadedProgram
from collector.bpf.ringbuf import RingBuffer
from collector.bpf.syscall import name_thread
from collector.component import CreateSettings
from collector.model import RawBatch

if TYPE_CHECKING:
    from collector.host import Host

_U32 = struct.Struct("<I")
MAX_FAILED_DRAINS = 5  # in a row: then the receiver has failed
RETRY_DELAY_S = 0.1  # doubles per failed drain: 0.1 + 0.2 + 0.4 + 0.8 s before the fifth

HandOn = Callable[[list[RawBatch]], None]


class ReaderFailed(Exception):
    """Drains kept failing: the reader gives up (the last error is chained)."""

    def __init__(self, failures: int) -> None:
        super().__init__(f"{failures} drains in a row failed")
        self.failures = failures


class RingReader:
    """Base of the receivers whose BPF program writes records into one ring buffer."""

    program: ClassVar[str]  # bpf/<program>.bpf.c; also "<program> receiver ..." in log lines

    def __init__(
        self,
        settings: CreateSettings,
        *,
        optional: bool,
        interval: float,
        counters: tuple[str, ...],
    ) -> None:
        self._id = settings.id
        self._log = settings.logger or logging.getLogger(__name__)
        self._consumer = settings.consumer
        self._optional = optional
        self._interval = interval  # seconds between batches
        self._next_emit = 0.0
        self._counter_names = counters  # index in the per-CPU "counters" map -> name
        self._counter_prev = [0] * len(counters)
        self._batch_counters: dict[str, int] = {}
        self._host: Host | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._prog: LoadedProgram | None = None
        self._ringbuf: RingBuffer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._boot_offset = 0  # CLOCK_REALTIME - CLOCK_BOOTTIME, set at every drain
        self._closed = False
        self._final_read = False  # set for the drain at release: everything is read
        self._failure: BaseException | None = None
        self._transient_logged = False

    # -- what a subclass provides ----------------------------------------------------------

    def _load(self) -> LoadedProgram:
        """Load the program (blocking: runs in a worker thread)."""
        raise NotImplementedError

    async def _setup(self) -> None:
        """Maps, ring buffer and targets, after the load; an error closes everything."""
        raise NotImplementedError

    def _drain(self) -> None:
        """Read every record in the ring buffer and the BPF counters."""
        raise NotImplementedError

    def _take_batches(self) -> list[RawBatch]:
        """What was read since the last call, with the counters counted meanwhile."""
        raise NotImplementedError

    def describe(self) -> str:
        """key=value settings for the start-up log line."""
        return ""

    def _poll_timeout(self) -> float:
        """How long the reader may wait on the ring: until the next batch is due."""
        return max(0.0, self._next_emit - time.monotonic())

    def _after_drain(self) -> None:
        """After each drain: hand on a batch every ``interval``."""
        now = time.monotonic()
        if now >= self._next_emit:
            self._next_emit = now + self._interval
            self._emit(self._take_batches())

    def _counters_due(self) -> bool:
        """Whether this drain reads the BPF counters: the drain that hands on a batch, and the
        last one. Not every drain: BPF wakes the reader for each new process, exec and exit, a
        storm of them is hundreds of wake-ups a second, and a read is a bpf(2) call per counter
        (it was a third of the reader's CPU in an exec storm)."""
        return self._final_read or time.monotonic() >= self._next_emit

    def _last_read(self, final_drain: bool) -> None:
        """At release, before the last batches are taken (not after a reader failure)."""
        if final_drain:
            self._drain()

    def _detach(self) -> None:
        """Stop the kernel producing records (their fds stay open for the last read)."""
        if self._prog is not None:
            self._prog.detach()

    def _close(self) -> None:
        """Close every fd (idempotent)."""
        if self._ringbuf is not None and not self._ringbuf.closed:
            self._ringbuf.close()
        if self._prog is not None:
            self._prog.close()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: Host) -> None:
        self._host = host
        self._loop = asyncio.get_running_loop()
        self._prog = await asyncio.to_thread(self._load)
        try:
            await self._setup()
        except BaseException:
            self._close()
            raise
        self._thread = threading.Thread(target=self._run, name=f"{self._id}-reader", daemon=True)
        self._thread.start()
        self._log.info(
            "%s receiver started id=%s %s load_seconds=%.2f",
            self.program,
            self._id,
            self.describe(),
            self._prog.load_seconds,
        )

    async def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._stop.set()
            if self._ringbuf is not None:
                self._ringbuf.wake()
            await asyncio.to_thread(self._thread.join)
            await asyncio.sleep(0)  # let batches the thread scheduled go first
        self._release(self._failure is None, self._hand_on)
        self._log.info("%s receiver stopped id=%s", self.program, self._id)

    def _hand_on(self, batches: list[RawBatch]) -> None:
        if self._consumer is not None:
            for batch in batches:
                self._consumer.consume(batch)

    def _release(self, final_drain: bool, hand_on: HandOn) -> None:
        """Detach every probe, read what they left, hand on the last batches, close."""
        self._detach()  # no new records from here on: the last read gets them all
        if self._ringbuf is not None and not self._ringbuf.closed:
            self._final_read = True
            self._last_read(final_drain)
            hand_on(self._take_batches())
        self._close()

    # -- reader thread ---------------------------------------------------------------------

    def _run(self) -> None:
        name_thread(f"{self._id}-reader")
        try:
            self._read_until_stopped()
        except BaseException as exc:  # the reader is gone: never silently
            self._failed(exc)

    def _read_until_stopped(self) -> None:
        assert self._ringbuf is not None
        self._next_emit = time.monotonic() + self._interval
        failures = 0
        while not self._stop.is_set():
            self._ringbuf.poll(self._poll_timeout())
            if self._stop.is_set():
                return
            try:
                self._drain()
                self._after_drain()
                failures = 0
            except Exception as exc:
                failures += 1
                self._count("reader_errors")
                if failures >= MAX_FAILED_DRAINS:
                    raise ReaderFailed(failures) from exc
                if failures == 1 and not self._transient_logged:
                    # One line, the first time: the traceback goes with the failure, if any.
                    self._transient_logged = True
                    self._log.warning(
                        "%s receiver drain failed id=%s error=%r (retrying; counted as "
                        "reader_errors)",
                        self.program,
                        self._id,
                        exc,
                    )
                # Back off briefly: the buffer holds seconds of records, so a few retries
                # cannot overflow it, and a broken reader is known within about 2 s.
                self._stop.wait(RETRY_DELAY_S * 2 ** (failures - 1))

    def _failed(self, exc: BaseException) -> None:
        """Log the cause once, count it, hand on what was read; then stop the collector
        (report_fatal) or, for an optional receiver, only this receiver."""
        self._failure = exc
        cause = exc.__cause__ if isinstance(exc, ReaderFailed) and exc.__cause__ else exc
        message = f"reader failed: {type(cause).__name__}: {cause}"
        if isinstance(exc, ReaderFailed):
            message += f" ({exc.failures} drains in a row)"
        self._count("receiver_failed")
        self._log.error(
            "%s receiver failed id=%s optional=%s: %s",
            self.program,
            self._id,
            self._optional,
            message,
            exc_info=cause,
        )
        self._emit(self._take_batches())  # what was read before the failure goes on
        if self._optional:
            self._release(False, self._emit)  # this receiver only: its program and fds
        elif self._host is not None:
            self._host.report_fatal(self._id, message)

    def _emit(self, batches: list[RawBatch]) -> None:
        if self._consumer is None or self._loop is None:
            return
        for batch in batches:
            try:
                self._loop.call_soon_threadsafe(self._consumer.consume, batch)
            except RuntimeError:  # loop closed during shutdown
                self._count("batches_lost_at_shutdown")

    # -- counters --------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        """Count in host.counters and in the next batch's counters."""
        if not n:
            return
        self._batch_counters[name] = self._batch_counters.get(name, 0) + n
        if self._host is not None:
            self._host.counters.add(self._id, name, n)

    def _take_counters(self) -> dict[str, int]:
        counters, self._batch_counters = self._batch_counters, {}
        return counters

    def _read_counters(self) -> int:
        """Add the BPF counters' growth to host.counters, and whatever ``_read_more_counters``
        adds, when ``_counters_due``; return the new stack collisions (0 when not due)."""
        if not self._counters_due():
            return 0
        self._read_more_counters()
        assert self._prog is not None
        counters = self._prog.map("counters")
        collisions = 0
        for i, name in enumerate(self._counter_names):
            value = counters.percpu_u64_sum(_U32.pack(i))
            delta = value - self._counter_prev[i]
            self._count(name, delta)
            self._counter_prev[i] = value
            if name.endswith("_stack_collision"):
                collisions += delta
        return collisions

    def _read_more_counters(self) -> None:
        """A subclass's own counters read with the BPF ones (a table unwinder's)."""

    def _set_boot_offset(self) -> None:
        """CLOCK_BOOTTIME (BPF's clock) to wall-clock time, fresh for this drain."""
        self._boot_offset = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
