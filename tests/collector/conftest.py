from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.plugins import install_plugin


@pytest.fixture(scope="session")
def sample_plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_plugin("sample_plugin", tmp_path_factory.mktemp("sample_plugin"))


@pytest.fixture(scope="session")
def broken_plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_plugin("broken_plugin", tmp_path_factory.mktemp("broken_plugin"))


@pytest.fixture
def with_sample_plugin(sample_plugin_dir: Path) -> Iterator[Path]:
    """Makes the installed sample plugin's entry points visible in this process."""
    sys.path.insert(0, str(sample_plugin_dir))
    try:
        yield sample_plugin_dir
    finally:
        sys.path.remove(str(sample_plugin_dir))
        for mod in [m for m in sys.modules if m.startswith("collector_sample_plugin")]:
            del sys.modules[mod]
