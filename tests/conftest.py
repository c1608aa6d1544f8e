"""Shared test set-up. Real-kernel tests carry the ``bpf`` marker.

Off CI a bpf test skips with the reason when the machine cannot run BPF; in CI (CI=true) that
same condition is a failure, because a green run that skipped the kernel tests proves nothing.
The same holds for every other skip (a missing compiler, c++filt, readelf): in CI it fails,
naming what is missing (tests/support/ci.py).
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.support.bpfcheck import bpf_unavailable_reason
from tests.support.ci import fail_skip_in_ci, in_ci

IN_CI = in_ci()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = None
    checked = False
    for item in items:
        if item.get_closest_marker("bpf") is None:
            continue
        if not checked:
            reason = bpf_unavailable_reason()
            checked = True
        if reason is None:
            continue
        if IN_CI:
            item.add_marker(pytest.mark.usefixtures("_bpf_required_in_ci"))
        else:
            item.add_marker(pytest.mark.skip(reason=f"needs BPF: {reason}"))


@pytest.fixture
def _bpf_required_in_ci() -> None:
    pytest.fail(f"BPF test cannot run in CI: {bpf_unavailable_reason()}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    fail_skip_in_ci(report)
    return report
