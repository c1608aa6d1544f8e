"""Replays every input the fuzzers (or people) found a bug with, kept under
tests/fuzz/regressions/<target>/, through its target without atheris: it must not raise."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

REGRESSIONS = Path(__file__).resolve().parent / "regressions"
CASES = sorted(p for p in REGRESSIONS.glob("*/*") if p.is_file())


def test_every_regression_names_a_target() -> None:
    assert CASES, "the regression corpus is empty"
    assert {p.parent.name for p in CASES} <= TARGETS.keys()


@pytest.mark.parametrize("case", CASES, ids=[f"{p.parent.name}/{p.name}" for p in CASES])
def test_regression_input_is_handled(case: Path) -> None:
    TARGETS[case.parent.name](case.read_bytes())
