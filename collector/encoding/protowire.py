"""The few protobuf wire-format primitives the pprof encoder needs.

Hand-rolled so an encoder writes bytes straight from the model's tables instead of building a
message object per sample. Proto3 rules: scalar fields equal to 0 are omitted.
"""

from __future__ import annotations

VARINT = 0
LEN = 2
_U64 = 1 << 64
_SMALL = [bytes([i]) for i in range(0x80)]


def uvarint(n: int) -> bytes:
    """Base-128 varint; a negative int64 is written as its 64-bit two's complement."""
    if 0 <= n < 0x80:
        return _SMALL[n]
    if 0 < n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if n < 0:
        n += _U64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def tag(field: int, wire: int) -> bytes:
    return uvarint(field << 3 | wire)


def varint_field(field: int, n: int) -> bytes:
    return tag(field, VARINT) + uvarint(n) if n else b""


def bytes_field(field: int, payload: bytes) -> bytes:
    return tag(field, LEN) + uvarint(len(payload)) + payload


def packed_field(field: int, values: list[int] | tuple[int, ...]) -> bytes:
    if not values:
        return b""
    return bytes_field(field, b"".join(map(uvarint, values)))


def packed_ids(field: int, ids: tuple[int, ...], encoded: list[bytes]) -> bytes:
    """``packed_field`` for table indices whose varints are precomputed in ``encoded``."""
    if not ids:
        return b""
    return bytes_field(field, b"".join([encoded[i] for i in ids]))
