from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import symbolize_fixtures as fx


@pytest.fixture(scope="session")
def fixture_bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    reason = fx.have_compilers()
    if reason:
        pytest.skip(reason)
    return fx.build(tmp_path_factory.mktemp("symbolize_fixtures"))
