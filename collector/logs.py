"""One structured line per event, in logfmt: ``time=... level=... logger=... msg=...``."""

from __future__ import annotations

import logging
import sys
import time


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


def setup(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # grpc and aiohttp are chatty at info; keep their warnings.
    for noisy in ("asyncio", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
