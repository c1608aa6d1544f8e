"""google.rpc.Status and google.rpc.RetryInfo without a googleapis-common-protos dependency.

The two messages are declared here from their published field numbers into a private
descriptor pool, so they cannot clash with the real package if it is installed too.
"""

from __future__ import annotations

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, duration_pb2, message_factory
from google.protobuf.message import DecodeError, Message

RETRY_INFO_TYPE_URL = "type.googleapis.com/google.rpc.RetryInfo"
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def _build() -> tuple[type[Message], type[Message]]:
    pool = descriptor_pool.DescriptorPool()
    for mod in (any_pb2, duration_pb2):
        fdp = descriptor_pb2.FileDescriptorProto()
        mod.DESCRIPTOR.CopyToProto(fdp)
        pool.Add(fdp)
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(
        name="collector/google_rpc_subset.proto",
        package="google.rpc",
        syntax="proto3",
        dependency=["google/protobuf/any.proto", "google/protobuf/duration.proto"],
    )
    st = fdp.message_type.add(name="Status")
    st.field.add(name="code", number=1, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    st.field.add(name="message", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    st.field.add(
        name="details",
        number=3,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".google.protobuf.Any",
    )
    ri = fdp.message_type.add(name="RetryInfo")
    ri.field.add(
        name="retry_delay",
        number=1,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_OPTIONAL,
        type_name=".google.protobuf.Duration",
    )
    pool.Add(fdp)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.RetryInfo")),
    )


Status, RetryInfo = _build()


def status_with_retry_delay(code: int, message: str, delay_s: float) -> bytes:
    """A serialized Status carrying a RetryInfo (what servers put in grpc-status-details-bin)."""
    info = RetryInfo()
    info.retry_delay.FromNanoseconds(int(delay_s * 1e9))
    st = Status(code=code, message=message)
    d = st.details.add()
    d.type_url = RETRY_INFO_TYPE_URL
    d.value = info.SerializeToString()
    return st.SerializeToString()


def retry_delay_from_status(blob: bytes) -> float | None:
    """The RetryInfo delay in seconds from a serialized Status, or None."""
    try:
        st = Status.FromString(blob)
        for d in st.details:
            if d.type_url == RETRY_INFO_TYPE_URL:
                info = RetryInfo.FromString(d.value)
                return info.retry_delay.ToNanoseconds() / 1e9
    except (DecodeError, ValueError):
        return None
    return None
