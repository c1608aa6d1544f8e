"""In CI every skip is a failure that names what is missing; off CI it stays a skip.

Runs a small suite with pytester under the project's own hook from tests/conftest.py.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SUITE = """
import shutil
import pytest

def test_runs():
    pass

def test_skips_at_run_time():
    pytest.skip("missing gcc")

@pytest.mark.skipif(shutil.which("sh") is not None, reason="c++filt not installed")
def test_skipif():
    pass

@pytest.mark.xfail(reason="known", strict=False)
def test_xfail():
    assert False
"""

# The project's own hook, registered the way tests/conftest.py registers it.
CONFTEST = "from tests.conftest import pytest_runtest_makereport  # noqa: F401\n"


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def test_off_ci_skips_stay_skips(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    res = suite.runpytest("-p", "no:cacheprovider")
    res.assert_outcomes(passed=1, skipped=2, xfailed=1)


def test_in_ci_skips_fail_with_their_reason(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    res = suite.runpytest("-p", "no:cacheprovider", "-rfE")
    # A skipif fires during setup, so it shows as an error; either makes the run fail.
    res.assert_outcomes(passed=1, failed=1, errors=1, xfailed=1)
    out = res.stdout.str()
    assert "skipped in CI, where every test must run" in out
    assert "missing gcc" in out and "c++filt not installed" in out
