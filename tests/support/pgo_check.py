"""What ``go build -pgo`` made of a profile: the compiler's PGO debug lines for pgohot.

``-gcflags=<pkg>=-d=pgodebug=3`` prints, for each interface call it considers, one
``edge <caller>:<offset> -> <callee> (weight W): hottest so far`` line per better candidate (the
last is the callee it devirtualizes to), and ``hot-budget check allows inlining for call
<callee> ... in function <caller>`` for each hot direct call it inlines past the normal budget.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support import gotoolchains as gt
from tests.support.collector_run import ROOT

PKG = "example.com/pgohot"
_EDGE = re.compile(r"edge (\S+):(\d+) -> (\S+) \(weight (\d+)\): hottest so far")
_HOT = re.compile(r"hot-budget check allows inlining for call (\S+) .* in function (\S+)")


def collector_pgo(source: Path, binary: Path | str, out: Path) -> subprocess.CompletedProcess[str]:
    """``collector pgo --from source --binary binary -o out`` run as a user runs it."""
    cmd = [sys.executable, "-m", "collector.cli", "pgo", "--from", str(source)]
    cmd += ["--binary", str(binary), "-o", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)


def pgo_build(version: str, profile: Path, out: Path) -> str:
    """Build pgohot with ``-pgo=profile``; the compiler's output."""
    return gt.go(
        version,
        "build",
        "-o",
        str(out),
        f"-pgo={profile}",
        f"-gcflags={PKG}=-d=pgodebug=3",
        ".",
        cwd=gt.WORKLOADS / "pgohot",
    )


def hottest_callee(output: str, caller: str) -> tuple[str, int] | None:
    """The callee the compiler chose as ``caller``'s hottest (last "hottest so far"), weight."""
    found = None
    for m in _EDGE.finditer(output):
        if m.group(1) == caller:
            found = (m.group(3), int(m.group(4)))
    return found


def hot_inlined(output: str) -> set[tuple[str, str]]:
    """(caller, callee) of every call inlined because PGO found it hot."""
    return {(m.group(2), m.group(1)) for m in _HOT.finditer(output)}
