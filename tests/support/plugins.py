"""Installs the test plugin packages the way a user would, into a private target folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

PLUGINS = Path(__file__).resolve().parent.parent / "plugins"


def install_plugin(name: str, target: Path) -> Path:
    """pip-install tests/plugins/<name> into ``target`` (no deps); return ``target``.

    The source is copied first so the build leaves nothing in the repository.
    """
    src = target.parent / f"{name}-src"
    shutil.copytree(PLUGINS / name, src, dirs_exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    return target
