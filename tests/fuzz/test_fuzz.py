"""Each fuzz target under atheris for FUZZ_SECONDS (5 by default) from real seeds.

A crash, a hang past -timeout, or RSS past -rss_limit_mb fails the test and leaves the input in
the failure message; keep it as tests/fuzz/regressions/<target>/<name> (test_regressions.py
replays it) and fix the parser. Executions per target are printed (run with -s) and recorded
in SECURITY.md. Longer campaigns: FUZZ_SECONDS=600 .venv/bin/python -m pytest tests/fuzz -s
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import IN_CI
from tests.fuzz import seeds
from tests.fuzz.targets import TARGETS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SECONDS = float(os.environ.get("FUZZ_SECONDS", "5"))
MAX_LEN = 25 << 20  # the Go seed (about 17 MB) must fit whole


@pytest.fixture(scope="module")
def seed_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if not IN_CI:
        pytest.importorskip("atheris")  # in CI the test extra has it: a missing one fails
    return seeds.write(tmp_path_factory.mktemp("fuzz_corpus"))


@pytest.mark.parametrize("target", list(TARGETS))
def test_target_survives_fuzzing(seed_dirs: dict[str, Path], target: str, tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "tests.fuzz.run",
        target,
        f"-max_total_time={int(SECONDS)}",
        "-timeout=20",
        "-rss_limit_mb=1536",
        f"-max_len={MAX_LEN}",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
        str(seed_dirs[target]),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=SECONDS * 4 + 300)
    found = sorted(artifacts.iterdir())
    tail = "\n".join(proc.stderr.splitlines()[-40:])
    assert proc.returncode == 0 and not found, (
        f"{target} crashed; keep {[str(f) for f in found]} as "
        f"tests/fuzz/regressions/{target}/<name> and fix it:\n{_crash_report(proc.stderr)}"
    )
    runs = re.search(r"stat::number_of_executed_units: (\d+)", proc.stderr)
    rate = re.search(r"stat::average_exec_per_sec:\s+(\d+)", proc.stderr)
    assert runs and int(runs.group(1)) > 0, tail
    print(
        f"fuzz {target}: {runs.group(1)} executions in {SECONDS:g} s ({rate and rate.group(1)}/s)"
    )


def _crash_report(stderr: str) -> str:
    """What a crash needs to be found again where the artifact is gone (a CI machine): the
    Python traceback (atheris prints it before libFuzzer's "fuzz target exited", often more
    than 40 lines before the end), libFuzzer's seed (rerun with -seed=N from the same seeds),
    and the tail."""
    lines = stderr.splitlines()
    seed = next((ln for ln in lines if ln.startswith("INFO: Seed:")), "no seed line")
    start = next((i for i, ln in enumerate(lines) if "Uncaught Python exception" in ln), None)
    trace = "\n".join(lines[start : start + 60]) if start is not None else "no Python traceback"
    return f"{seed}\n{trace}\n...\n" + "\n".join(lines[-40:])
