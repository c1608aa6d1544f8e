"""Pyroscope's push.v1 messages, declared to the protobuf runtime's descriptor pool.

Field numbers as in grafana/pyroscope api/push/v1/push.proto and api/types/v1/types.proto:

    message LabelPair { string name = 1; string value = 2; }                      // types.v1
    message PushRequest { repeated RawProfileSeries series = 1; }                 // push.v1
    message RawProfileSeries { repeated types.v1.LabelPair labels = 1;
                               repeated RawSample samples = 2; }
    message RawSample { bytes raw_profile = 1; string ID = 2; }
    message PushResponse {}

Four small messages do not justify generated code and its protoc/runtime version coupling;
declaring them here gives real protobuf message classes from the installed runtime. The pool
is private, so the names cannot clash with another library's registrations.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
PUSH_PATH = "/push.v1.PusherService/Push"


def _message(fd: Any, name: str, fields: list[tuple[str, int, int, bool, str]]) -> None:
    m = fd.message_type.add(name=name)
    for fname, number, ftype, repeated, type_name in fields:
        f = m.field.add(
            name=fname,
            number=number,
            type=ftype,
            label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
        )
        if type_name:
            f.type_name = type_name


def _pool() -> descriptor_pool.DescriptorPool:
    types = descriptor_pb2.FileDescriptorProto(
        name="types/v1/types.proto", package="types.v1", syntax="proto3"
    )
    _message(
        types,
        "LabelPair",
        [("name", 1, _F.TYPE_STRING, False, ""), ("value", 2, _F.TYPE_STRING, False, "")],
    )
    push = descriptor_pb2.FileDescriptorProto(
        name="push/v1/push.proto",
        package="push.v1",
        syntax="proto3",
        dependency=["types/v1/types.proto"],
    )
    _message(
        push,
        "RawSample",
        [("raw_profile", 1, _F.TYPE_BYTES, False, ""), ("ID", 2, _F.TYPE_STRING, False, "")],
    )
    _message(
        push,
        "RawProfileSeries",
        [
            ("labels", 1, _F.TYPE_MESSAGE, True, ".types.v1.LabelPair"),
            ("samples", 2, _F.TYPE_MESSAGE, True, ".push.v1.RawSample"),
        ],
    )
    _message(
        push, "PushRequest", [("series", 1, _F.TYPE_MESSAGE, True, ".push.v1.RawProfileSeries")]
    )
    _message(push, "PushResponse", [])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(types)
    pool.Add(push)
    return pool


_POOL = _pool()


def _class(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(name))


PushRequest: Any = _class("push.v1.PushRequest")
PushResponse: Any = _class("push.v1.PushResponse")
