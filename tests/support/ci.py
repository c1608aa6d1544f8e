"""What CI (CI=true) demands of the suite: every test runs.

Off CI a test may skip with its reason when the machine lacks something (root, BPF, a
compiler). In CI a skip proves nothing, since scripts/setup.sh installs everything the tests
need, so a skip there is reported as a failure that names the missing piece.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: why")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def fail_skip_in_ci(report: pytest.TestReport) -> None:
    """Turn a skipped report into a failed one when running in CI (xfail is left alone)."""
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    report.outcome = "failed"
    report.longrepr = (
        f"skipped in CI, where every test must run (scripts/setup.sh test installs what the "
        f"tests need): {skip_reason(report)}"
    )
