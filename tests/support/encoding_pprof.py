"""Independent readers of the pprof files the encoders write.

``decode`` parses with the real protobuf runtime from a descriptor built here from pprof's
field numbers (not from the encoder's code); ``go_pprof`` runs the real `go tool pprof`.
"""

from __future__ import annotations

import functools
import gzip
import os
import subprocess
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_I64, _U64, _BOOL, _STR, _MSG = (
    _F.TYPE_INT64,
    _F.TYPE_UINT64,
    _F.TYPE_BOOL,
    _F.TYPE_STRING,
    _F.TYPE_MESSAGE,
)
_REP, _OPT = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL

# message -> [(name, number, type, repeated, message type)]
_SCHEMA: dict[str, list[tuple]] = {
    "Profile": [
        ("sample_type", 1, _MSG, True, "ValueType"),
        ("sample", 2, _MSG, True, "Sample"),
        ("mapping", 3, _MSG, True, "Mapping"),
        ("location", 4, _MSG, True, "Location"),
        ("function", 5, _MSG, True, "Function"),
        ("string_table", 6, _STR, True, ""),
        ("time_nanos", 9, _I64, False, ""),
        ("duration_nanos", 10, _I64, False, ""),
        ("period_type", 11, _MSG, False, "ValueType"),
        ("period", 12, _I64, False, ""),
        ("comment", 13, _I64, True, ""),
        ("default_sample_type", 14, _I64, False, ""),
    ],
    "ValueType": [("type", 1, _I64, False, ""), ("unit", 2, _I64, False, "")],
    "Sample": [
        ("location_id", 1, _U64, True, ""),
        ("value", 2, _I64, True, ""),
        ("label", 3, _MSG, True, "Label"),
    ],
    "Label": [
        ("key", 1, _I64, False, ""),
        ("str", 2, _I64, False, ""),
        ("num", 3, _I64, False, ""),
    ],
    "Mapping": [
        ("id", 1, _U64, False, ""),
        ("memory_start", 2, _U64, False, ""),
        ("memory_limit", 3, _U64, False, ""),
        ("file_offset", 4, _U64, False, ""),
        ("filename", 5, _I64, False, ""),
        ("build_id", 6, _I64, False, ""),
        ("has_functions", 7, _BOOL, False, ""),
        ("has_filenames", 8, _BOOL, False, ""),
        ("has_line_numbers", 9, _BOOL, False, ""),
        ("has_inline_frames", 10, _BOOL, False, ""),
    ],
    "Location": [
        ("id", 1, _U64, False, ""),
        ("mapping_id", 2, _U64, False, ""),
        ("address", 3, _U64, False, ""),
        ("line", 4, _MSG, True, "Line"),
    ],
    "Line": [("function_id", 1, _U64, False, ""), ("line", 2, _I64, False, "")],
    "Function": [
        ("id", 1, _U64, False, ""),
        ("name", 2, _I64, False, ""),
        ("system_name", 3, _I64, False, ""),
        ("filename", 4, _I64, False, ""),
        ("start_line", 5, _I64, False, ""),
    ],
}


@functools.cache
def _profile_class() -> Any:
    fd = descriptor_pb2.FileDescriptorProto(
        name="test_pprof_profile.proto", package="testpprof", syntax="proto3"
    )
    for msg, fields in _SCHEMA.items():
        m = fd.message_type.add(name=msg)
        for name, number, typ, repeated, type_name in fields:
            f = m.field.add(name=name, number=number, type=typ, label=_REP if repeated else _OPT)
            if type_name:
                f.type_name = f".testpprof.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("testpprof.Profile"))


def decode(data: bytes) -> Any:
    """Parse a ``.pb.gz`` file's bytes (or an uncompressed Profile) into a message."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    p = _profile_class()()
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
