"""The pprof ``perftools.profiles.Profile`` message, for reading and writing with protobuf.

The project has no generated module for profile.proto (its encoder writes the wire format
itself, collector/encoding/pprof.py), so the message class is built at run time from a
descriptor made here, with the field numbers of collector/encoding/profile.proto. protobuf's
parser is bounds-checked C; the caller bounds the input's size.
"""

from __future__ import annotations

import functools
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

# message -> [(field, number, type, repeated, message type)], as in profile.proto
_SCHEMA: dict[str, list[tuple[str, int, int, bool, str]]] = {
    "Profile": [
        ("sample_type", 1, _MSG, True, "ValueType"),
        ("sample", 2, _MSG, True, "Sample"),
        ("mapping", 3, _MSG, True, "Mapping"),
        ("location", 4, _MSG, True, "Location"),
        ("function", 5, _MSG, True, "Function"),
        ("string_table", 6, _STR, True, ""),
        ("drop_frames", 7, _I64, False, ""),
        ("keep_frames", 8, _I64, False, ""),
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
        ("num_unit", 4, _I64, False, ""),
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
        ("is_folded", 5, _BOOL, False, ""),
    ],
    "Line": [
        ("function_id", 1, _U64, False, ""),
        ("line", 2, _I64, False, ""),
        ("column", 3, _I64, False, ""),
    ],
    "Function": [
        ("id", 1, _U64, False, ""),
        ("name", 2, _I64, False, ""),
        ("system_name", 3, _I64, False, ""),
        ("filename", 4, _I64, False, ""),
        ("start_line", 5, _I64, False, ""),
    ],
}


@functools.cache
def profile_class() -> Any:
    """The Profile message class (one per process)."""
    fd = descriptor_pb2.FileDescriptorProto(
        name="collector_pgo_profile.proto", package="collector.pgo.pprof", syntax="proto3"
    )
    for msg, fields in _SCHEMA.items():
        m = fd.message_type.add(name=msg)
        for name, number, typ, repeated, type_name in fields:
            f = m.field.add(name=name, number=number, type=typ, label=_REP if repeated else _OPT)
            if type_name:
                f.type_name = f".collector.pgo.pprof.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("collector.pgo.pprof.Profile")
    )
