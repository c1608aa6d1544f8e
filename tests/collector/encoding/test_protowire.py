from __future__ import annotations

from google.protobuf.internal import encoder

from collector.encoding.protowire import packed_field, uvarint, varint_field

VALUES = [0, 1, 127, 128, 300, 16383, 16384, 2**32, 2**63 - 1, 0xFFFFFFFF81000200]


def test_varints_match_the_protobuf_runtime() -> None:
    for v in VALUES:
        assert uvarint(v) == encoder._VarintBytes(v), v


def test_negative_int64_is_ten_bytes_twos_complement() -> None:
    assert uvarint(-1) == encoder._VarintBytes(2**64 - 1)
    assert len(uvarint(-1)) == 10


def test_proto3_omits_zero_and_packs_repeated() -> None:
    assert varint_field(3, 0) == b""
    assert varint_field(1, 150) == b"\x08\x96\x01"
    assert packed_field(4, [3, 270, 86942]) == b"\x22\x06\x03\x8e\x02\x9e\xa7\x05"
