"""Run the real collector CLI as a subprocess, the way a user does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class RunningCollector:
    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.log = config.with_suffix(".log")
        self._log_f = self.log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collector.cli", "--config", str(config)],
            cwd=ROOT,
            env=dict(os.environ, **(env or {})),
            stdout=subprocess.DEVNULL,
            stderr=self._log_f,
        )

    def logs(self) -> str:
        return self.log.read_text()

    def wait_started(self, timeout: float = 60.0) -> None:
        """Until every receiver has started (BPF programs attached) or the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "msg='started pipelines=" in self.logs():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited {self.proc.returncode}:\n{self.logs()}")
            time.sleep(0.1)
        raise AssertionError(f"collector did not start in {timeout}s:\n{self.logs()}")

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._log_f.close()
        return rc
