"""One structured line per event, in logfmt: ``time=... level=... logger=... msg=...``.

Failures are rate limited per class, so a flapping backend never floods the log: a class is
the logger and the message template (``"%s: giving up after retries: %s samples=%d"`` from
``collector.exporters.otlp``), whatever its arguments. The first line of a class is written;
further ones within ``period`` (60 s) are only counted; the next one after the period is
written with ``suppressed=N`` appended, and ``flush_suppressed`` (called with every counter
report and at shutdown) writes one summary for classes that went quiet with lines pending.
Only warnings and errors are limited: info lines (start, totals) are one per event already.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

PERIOD_S = 60.0


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = record.getMessage().replace("\n", " | ")
        line = (
            f"time={ts}.{int(record.msecs):03d}Z level={record.levelname.lower()} "
            f"logger={record.name} msg={msg!r}"
        )
        if record.exc_info:
            # Bugs keep their traceback, folded onto the one line.
            line += " exc=" + repr(self.formatException(record.exc_info))
        return line


@dataclass(slots=True)
class _Class:
    last: float  # when a line of this class was last written
    suppressed: int = 0
    example: logging.LogRecord | None = None  # the latest suppressed record


class _Classes:
    """The bookkeeping both limiters share: which classes were seen, what was held back."""

    def __init__(self, period: float, clock: Callable[[], float]) -> None:
        self.period = period
        self.clock = clock
        self._lock = threading.Lock()
        self._classes: dict[object, _Class] = {}
        self.suppressed_total = 0

    def admit(self, key: object, record: logging.LogRecord | None = None) -> int | None:
        """None: hold this line back (counted). Otherwise write it, with that many
        suppressed since the class's last line."""
        now = self.clock()
        with self._lock:
            c = self._classes.get(key)
            if c is None:
                self._classes[key] = _Class(now)
                return 0
            if now - c.last < self.period:
                c.suppressed += 1
                c.example = record
                self.suppressed_total += 1
                return None
            n, c.suppressed, c.example, c.last = c.suppressed, 0, None, now
            return n

    def take_keys(self, final: bool) -> list[tuple[object, int]]:
        """Like take, by class key."""
        now = self.clock()
        out: list[tuple[object, int]] = []
        with self._lock:
            for key, c in self._classes.items():
                if c.suppressed and (final or now - c.last >= self.period):
                    out.append((key, c.suppressed))
                    c.suppressed, c.example, c.last = 0, None, now
        return out

    def take(self, final: bool) -> list[tuple[logging.LogRecord | None, int]]:
        """Classes with lines held back whose period is over (all of them when final)."""
        now = self.clock()
        out: list[tuple[logging.LogRecord | None, int]] = []
        with self._lock:
            for c in self._classes.values():
                if c.suppressed and (final or now - c.last >= self.period):
                    out.append((c.example, c.suppressed))
                    c.suppressed, c.example, c.last = 0, None, now
        return out


class RateLimit(logging.Filter):
    """On the handler: the first warning of a class through, then at most one per period."""

    def __init__(self, period: float = PERIOD_S, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.classes = _Classes(period, clock)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "summary", False):
            return True
        n = self.classes.admit((record.name, str(record.msg)), record)
        if n is None:
            return False
        if n:
            record.msg = f"{record.msg} suppressed={n}"
            record.exc_info = None  # the first one of the class carried the traceback
        return True


class Throttle:
    """The same limit inside one component instance, so it holds however logging is set
    up (embedded, tests) and a new instance (a reload) starts afresh. The class is the
    message template."""

    def __init__(
        self,
        logger: logging.Logger,
        period: float = PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = logger
        self.classes = _Classes(period, clock)
        self._latest: dict[str, tuple[int, tuple[object, ...]]] = {}

    def __call__(self, level: int, msg: str, *args: object) -> bool:
        """Log ``msg % args`` unless its class was logged within the period; True if it was."""
        n = self.classes.admit(msg, None)
        if n is None:
            self._latest[msg] = (level, args)
            return False
        self._latest.pop(msg, None)
        self.log.log(level, msg + (f" suppressed={n}" if n else ""), *args)
        return True

    def flush(self, final: bool = False) -> None:
        """For each class that went quiet with lines held back, its latest line with the
        count (at shutdown: every such class)."""
        due = dict(self.classes.take_keys(final))
        for msg, n in due.items():
            level, args = self._latest.pop(str(msg), (logging.WARNING, ()))
            self.log.log(level, f"{msg} suppressed={n} (latest of them)", *args)


_limit: RateLimit | None = None


def setup(level: str = "info", period: float = PERIOD_S) -> None:
    global _limit
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    _limit = RateLimit(period)
    handler.addFilter(_limit)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # grpc and aiohttp are chatty at info; keep their warnings.
    for noisy in ("asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())


def flush_suppressed(final: bool = False) -> int:
    """Write one summary line per class that had lines suppressed; returns how many."""
    if _limit is None:
        return 0
    pending = [(r, n) for r, n in _limit.classes.take(final) if r is not None]
    for rec, n in pending:
        summary = logging.LogRecord(
            rec.name, rec.levelno, rec.pathname, rec.lineno, "%s", (None,), None
        )
        text = rec.getMessage()
        summary.args = (f"suppressed={n} similar lines in the last period, latest: {text}",)
        summary.summary = True  # type: ignore[attr-defined]
        logging.getLogger(rec.name).handle(summary)
    return len(pending)
