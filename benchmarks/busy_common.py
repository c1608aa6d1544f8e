"""What the busy-host benchmarks share: the collector run as a user would (its own process,
the default pipeline's settings at 99 Hz), and /proc readings of it."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COLLECTOR = ROOT / ".venv" / "bin" / "collector"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from procstat import status_kb  # noqa: E402

from tests.support.pipelines import profiles_yaml  # noqa: E402


def status_mb(pid: int, key: str) -> float:
    return status_kb(pid, key) / 1024


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Collector:
    def __init__(
        self, work: Path, unwind: str, tag: str, tree: Path | None = None, comm: str | None = None
    ) -> None:
        """``tree``: another checkout of the collector (``storm --against``), run with this
        venv's packages; None: this one. ``comm``: the cpu receiver's comm filter."""
        self.out = work / f"{tag}-profiles"
        self.log = work / f"{tag}.log"
        cfg = work / f"{tag}.yaml"
        # "auto-nodwarf": unwind auto, names from symbols only (no DWARF lines or decl lines),
        # to show what DWARF costs, mostly the collector's own (libpython, symbolic's library)
        unwind, _, variant = unwind.partition("-")
        cpu: dict[str, object] = {"frequency": 99, "unwind": unwind}
        if comm is not None:
            cpu["comm"] = comm
        symbolize = {"dwarf_lines": False} if variant == "nodwarf" else {}
        cfg.write_text(
            profiles_yaml(
                self.out, {"cpu": cpu}, interval=3600, processors={"symbolize": symbolize}
            )
        )
        self.cmd = [str(COLLECTOR), "--config", str(cfg)]
        self.cwd = ROOT
        if tree is not None:  # its packages first on sys.path ('' is the cwd for -c)
            run = "import sys; from collector.cli import main; sys.exit(main())"
            self.cmd = [sys.executable, "-c", run, "--config", str(cfg)]
            self.cwd = tree
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        shutil.rmtree(self.out, ignore_errors=True)
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                self.cmd, stdout=log, stderr=log, cwd=self.cwd, preexec_fn=default_sigint
            )
        deadline = time.monotonic() + 120
        while "started pipelines" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"collector did not start:\n{self.log.read_text()}")
            time.sleep(0.1)
        return self.proc.pid

    def stop(self) -> dict[str, int]:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(120)
        return self.totals()

    def totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.log.read_text().splitlines():
            if "msg='totals component=receivers/cpu" in line:
                for k, v in re.findall(r"(\w+)=(\d+)", line.split("component=", 1)[1]):
                    out[k] = int(v)
        return out

    def folded(self) -> Counter[str]:
        stacks: Counter[str] = Counter()
        for f in self.out.glob("*.folded"):
            for line in f.read_text().splitlines():
                stack, _, n = line.rpartition(" ")
                stacks[stack] += int(n)
        return stacks
