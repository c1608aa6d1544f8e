"""Run the real collector CLI as a subprocess, the way a user does.

``start_collector(config)`` spawns ``collector --config ...`` and returns once the collector
logged ``started pipelines=...`` (every exporter, processor and receiver started, BPF
programs attached), so a test sends its workload or its signal to a collector known to be
ready instead of after a sleep. If the process exits first, the test fails with its stderr.
stdout and stderr are read in threads for the whole run, so a chatty collector never blocks
on a full pipe and the test can read everything it logged.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]
READY = "msg='started pipelines="
# Only to turn a hang into a failure with the collector's stderr; not a speed expectation.
HANG_GUARD_S = 120.0


class CollectorProcess:
    def __init__(
        self, args: Sequence[str], env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> None:
        self._cond = threading.Condition()
        self._out: list[str] = []
        self._err: list[str] = []
        self._ready = False
        self._eof = 0  # streams that reached end of file
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collector.cli", *args],
            cwd=cwd,
            env=dict(os.environ, **(env or {})),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._read, args=(s, keep), daemon=True)
            for s, keep in ((self.proc.stdout, self._out), (self.proc.stderr, self._err))
        ]
        for t in self._threads:
            t.start()

    def _read(self, stream: IO[str], keep: list[str]) -> None:
        for line in stream:
            with self._cond:
                keep.append(line)
                if keep is self._err and READY in line:
                    self._ready = True
                self._cond.notify_all()
        with self._cond:
            self._eof += 1
            self._cond.notify_all()

    def stderr(self) -> str:
        with self._cond:
            return "".join(self._err)

    def stdout(self) -> str:
        with self._cond:
            return "".join(self._out)

    logs = stderr  # the collector logs to stderr

    def _fail(self, why: str) -> AssertionError:
        return AssertionError(f"{why}; stderr:\n{self.stderr()}")

    def wait_started(self, timeout: float = HANG_GUARD_S) -> None:
        """Until the collector logged that it started; fails if it exits before that."""
        with self._cond:
            done = self._cond.wait_for(lambda: self._ready or self._eof == 2, timeout)
            ready = self._ready
        if ready:
            return
        if done:  # the pipes closed: the process is exiting
            rc = self.proc.wait()
            raise self._fail(f"collector exited {rc} before it started")
        raise self._fail(f"collector did not log {READY!r} within {timeout}s")

    def wait_for(
        self, condition: Callable[[], bool], what: str, timeout: float = HANG_GUARD_S
    ) -> None:
        """Poll ``condition`` (e.g. a file appeared) while the collector is alive."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                raise self._fail(f"collector exited {self.proc.returncode} before {what}")
            if time.monotonic() > deadline:
                raise self._fail(f"no {what} within {timeout}s")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGINT, timeout: float = HANG_GUARD_S) -> int:
        """Send ``sig`` (SIGINT, as Ctrl-C does) and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise self._fail(f"collector did not exit within {timeout}s of signal {sig}") from None
        finally:
            for t in self._threads:
                t.join(10)
        return rc


def start_collector(
    *configs: Path, env: dict[str, str] | None = None, args: Sequence[str] = ()
) -> CollectorProcess:
    """``collector --config C1 [--config C2 ...]``, returned once it has started."""
    argv = [a for c in configs for a in ("--config", str(c))]
    col = CollectorProcess([*argv, *args], env)
    try:
        col.wait_started()
    except BaseException:
        if col.proc.poll() is None:
            col.proc.kill()
            col.proc.wait()
        raise
    return col


class RunningCollector(CollectorProcess):
    """``collector --config config``, not yet waited for (call ``wait_started``)."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(["--config", str(config)], env)
