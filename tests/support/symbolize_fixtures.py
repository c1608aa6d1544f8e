"""Build and run the symbolizer's ground-truth programs (C with a shared library, C++).

Each program prints ``name 0xaddr`` lines for its functions, then ``ready``, and waits until
its stdin closes, so a test controls exactly when it exits.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

TESTDATA = Path(__file__).resolve().parent.parent / "processors" / "symbolize" / "testdata"
CFLAGS = ["-O0", "-g", "-fno-omit-frame-pointer"]


def have_compilers() -> str | None:
    """None when gcc and g++ are present, else why not."""
    missing = [c for c in ("gcc", "g++", "strip") if shutil.which(c) is None]
    return f"missing {', '.join(missing)}" if missing else None


def build(out: Path) -> dict[str, Path]:
    """Compile every fixture into ``out``; returns name -> path."""
    src = TESTDATA
    lib = out / "libfix.so"
    _run(["gcc", *CFLAGS, "-fPIC", "-shared", str(src / "libfix.c"), "-o", str(lib)])
    link = [f"-L{out}", "-lfix", "-Wl,-rpath,$ORIGIN"]
    pie = out / "fixture_pie"
    _run(["gcc", *CFLAGS, "-fPIE", "-pie", str(src / "fixture.c"), *link, "-o", str(pie)])
    nopie = out / "fixture_nopie"
    _run(["gcc", *CFLAGS, "-fno-pie", "-no-pie", str(src / "fixture.c"), *link, "-o", str(nopie)])
    stripped = out / "fixture_stripped"
    _run(["strip", "--strip-all", str(pie), "-o", str(stripped)])
    cxx = out / "fixture_cxx"
    _run(["g++", *CFLAGS, str(src / "fixture.cc"), "-o", str(cxx)])
    return {"lib": lib, "pie": pie, "nopie": nopie, "stripped": stripped, "cxx": cxx}


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def source_line(filename: str, marker: str) -> int:
    """The 1-based line of ``LINE:<marker>`` in a testdata source."""
    for i, line in enumerate((TESTDATA / filename).read_text().splitlines(), 1):
        if f"LINE:{marker}" in line:
            return i
    raise KeyError(marker)


@dataclass
class Running:
    proc: subprocess.Popen[str]
    addrs: dict[str, int]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start(path: Path) -> Running:
    proc = subprocess.Popen([str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    addrs: dict[str, int] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.strip()
        if line == "ready":
            return Running(proc, addrs)
        m = re.fullmatch(r"(\w+) (0x[0-9a-f]+)", line)
        if m:
            addrs[m.group(1)] = int(m.group(2), 16)
    proc.kill()
    raise RuntimeError(f"{path} exited before ready")
