"""Running the real collector the way deploy/ runs it: as another user, with only some
capabilities, or inside new namespaces, and reading back what it wrote.

The project's venv interpreter lives under /root (mode 0700 here), out of reach of another
user, so ``shadow_venv`` makes a venv on Debian's own python3.11 (the one bcc's package is
built for) whose site directory adds the project venv's: the same packages, reachable by
``nobody``. With ``copy=True`` the interpreter is a copy, as ``venv --copies`` makes it in
the image, so file capabilities can be set on it alone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sysconfig
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tests.support.collector_run import READY, ROOT
from tests.support.encoding_pprof import decode
from tests.support.pipelines import profiles_yaml

NOBODY = 65534
SYSTEM_PYTHON = Path("/usr/bin/python3.11")
# Only to turn a hang into a failure with the collector's stderr; not a speed expectation.
HANG_GUARD_S = 120.0


def world_dir(prefix: str) -> Path:
    """A fresh directory every user can read and enter (pytest's tmp_path is root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def shadow_venv(where: Path, copy: bool = False) -> Path:
    """A venv on Debian's python3.11 that sees the project venv's packages; its python."""
    site = sysconfig.get_paths()["purelib"]  # the project venv's (tests run in it)
    venv = where / "venv"
    lib = venv / "lib" / "python3.11" / "site-packages"
    lib.mkdir(parents=True)
    (venv / "bin").mkdir()
    py = venv / "bin" / "python3.11"
    if copy:
        shutil.copy2(SYSTEM_PYTHON, py)
    else:
        py.symlink_to(SYSTEM_PYTHON)
    (venv / "pyvenv.cfg").write_text(f"home = {SYSTEM_PYTHON.parent}\nversion = 3.11\n")
    (lib / "project-venv.pth").write_text(f"import site; site.addsitedir({site!r})\n")
    for p in [venv, *venv.rglob("*")]:
        p.chmod(0o755 if p.is_dir() or p == py else 0o644)
    return py


def pipeline(where: Path, hz: int = 199, owner: int | None = None) -> tuple[Path, Path]:
    """(config file, output directory) for cpu -> symbolize -> folded + pprof."""
    out = where / "out"
    out.mkdir()
    if owner is not None:
        os.chown(out, owner, owner)
    cfg = where / "pipeline.yaml"
    cfg.write_text(profiles_yaml(out, {"cpu": {"frequency": hz}}, exporters=("folded", "pprof")))
    cfg.chmod(0o644)
    return cfg, out


class Collector:
    """``prefix + [python, -m, collector.cli, --config, cfg]``, stderr kept in a file."""

    def __init__(self, prefix: Sequence[str], python: Path | str, cfg: Path, log: Path) -> None:
        self.log = log
        self._err = open(log, "w")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, HOME="/tmp")
        cmd = [*prefix, str(python), "-m", "collector.cli", "--config", str(cfg)]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stderr=self._err
        )

    def stderr(self) -> str:
        return self.log.read_text()

    def wait_started(self) -> None:
        deadline = time.monotonic() + HANG_GUARD_S
        while READY not in self.stderr():
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited {self.proc.returncode}:\n{self.stderr()}")
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"collector did not start:\n{self.stderr()}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._err.close()
        return rc


def run_workload(cmd: Sequence[str]) -> tuple[int, float]:
    """Run ``cmd`` to completion (it must exit 0): its pid and the CPU seconds it got."""
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, cmd
    return proc.pid, usage.ru_utime + usage.ru_stime


Row = tuple[dict[str, object], list[str], int]


def pprof_rows(out: Path) -> list[Row]:
    """(labels, function names leaf first, count) of every sample in the cpu pprof files,
    read with the independent decoder. Labels are what tells one process from another: the
    whole machine is profiled, and other tests may run a cpu_shares of their own meanwhile."""
    rows: list[Row] = []
    for f in sorted(out.glob("cpu-*.pb.gz")):
        p = decode(f.read_bytes())
        st = list(p.string_table)
        fn_names = {fn.id: st[fn.name] for fn in p.function}
        loc_names = {
            loc.id: (fn_names[loc.line[-1].function_id] if loc.line else "?") for loc in p.location
        }
        for s in p.sample:
            labels: dict[str, object] = {}
            for lb in s.label:
                labels[st[lb.key]] = st[lb.str] if lb.str else lb.num
            rows.append((labels, [loc_names[i] for i in s.location_id], s.value[0]))
    return rows


def leaf_counts_of(rows: list[Row], leaves: Sequence[str], **want: object) -> dict[str, int]:
    """Samples per leaf function among the rows whose labels have the ``want`` values."""
    out = dict.fromkeys(leaves, 0)
    for labels, frames, n in rows:
        if frames and frames[0] in out and all(labels.get(k) == v for k, v in want.items()):
            out[frames[0]] += n
    return out


def leaf_counts(folded: Counter[str], root: str, leaves: Sequence[str]) -> dict[str, int]:
    """Samples per leaf function among stacks that start at process name ``root``."""
    out = dict.fromkeys(leaves, 0)
    for stack, n in folded.items():
        frames = stack.split(";")
        if frames[0] == root and frames[-1] in out:
            out[frames[-1]] += n
    return out
