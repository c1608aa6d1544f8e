"""Independent readers of the pprof files the encoders write.

``decode`` parses with the real protobuf runtime, with the Profile message that
``collector pgo`` reads with (collector/pgo/profile_pb.py: a descriptor of pprof's field
numbers, not the encoder's code: collector/encoding/pprof.py writes the wire format by hand);
``go_pprof`` runs the real `go tool pprof`.
"""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path
from typing import Any

from collector.pgo.profile_pb import profile_class


def decode(data: bytes) -> Any:
    """Parse a ``.pb.gz`` file's bytes (or an uncompressed Profile) into a message."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    p = profile_class()()
    p.ParseFromString(data)
    return p


GO = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "go"


def go_pprof(path: Path, *args: str) -> str:
    """`go tool pprof <args> path`; never symbolizes on its own (the files are synthetic)."""
    env = dict(os.environ, GOTOOLCHAIN="local", GOCACHE=os.environ.get("GOCACHE", "/tmp/gocache"))
    env.setdefault("HOME", "/tmp")
    r = subprocess.run(
        [str(GO), "tool", "pprof", "-symbolize=none", *args, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=path.parent,
    )
    assert r.returncode == 0, f"go tool pprof failed: {r.stderr}"
    return r.stdout
