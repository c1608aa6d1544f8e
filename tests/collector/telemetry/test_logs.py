"""Failure lines are rate limited per class: the first is written, repeats within the period
are counted, the next after it carries suppressed=N, and a summary covers a class that went
quiet. Checked on an injected clock, and through the real handler set-up."""

from __future__ import annotations

import io
import logging

from collector import logs


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _records(name: str) -> tuple[logging.Logger, list[str]]:
    out: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            out.append(record.getMessage())

    log = logging.getLogger(name)
    log.handlers[:] = [Keep()]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log, out


def test_throttle_first_then_one_per_period_with_the_count() -> None:
    clock = Clock()
    log, out = _records("test.logs.throttle")
    say = logs.Throttle(log, period=60, clock=clock)
    for i in range(1000):  # a backend failing every request for 10 minutes
        clock.now = i * 0.6
        say(logging.ERROR, "%s: giving up samples=%d", "otlp", i)
        say(logging.ERROR, "%s: queue full", "otlp")  # another class, limited on its own
    assert len(out) <= 2 * (600 / 60 + 1), len(out)
    assert out[0] == "otlp: giving up samples=0" and out[1] == "otlp: queue full"
    later = [m for m in out if "giving up" in m][1]
    assert "suppressed=99" in later, out[:6]  # 100 in the first minute, one written
    say.flush(final=True)
    assert "suppressed=" in out[-1] and "latest of them" in out[-1]
    assert "samples=999" in " ".join(out[-2:])  # the summary shows the latest one


def test_handler_filter_limits_every_logger_and_leaves_info_alone() -> None:
    clock = Clock()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.LogfmtFormatter())
    limit = logs.RateLimit(period=60, clock=clock)
    handler.addFilter(limit)
    log = logging.getLogger("test.logs.filter")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    for i in range(50):
        clock.now = i
        log.warning("export failed component=%s error=%r", "exporters/otlp", i)
        log.info("totals component=%s n=%d", "x", i)
    clock.now = 61
    log.warning("export failed component=%s error=%r", "exporters/otlp", "again")
    lines = stream.getvalue().splitlines()
    failed = [ln for ln in lines if "export failed" in ln]
    assert len(failed) == 2 and "suppressed=49" in failed[1], failed
    assert len([ln for ln in lines if "totals" in ln]) == 50
    assert limit.classes.suppressed_total == 49
