"""Encoder, decoder and validator of the OTLP profiles mapping, on real protobuf messages."""

from __future__ import annotations

from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)

from collector.model import ProfileBuilder, ProfileType
from collector.otlp import decode_request, encode_profile_set, validate_request
from tests.support.otlp_fixtures import batch_shares, build, function_shares, make_batches


def test_encoded_tables_map_one_to_one() -> None:
    ps = build(make_batches(2000))
    d = ps.dictionary
    req = encode_profile_set(ps)
    pd = req.dictionary
    assert validate_request(req) == []
    assert len(pd.location_table) == len(d.locations)
    assert len(pd.function_table) == len(d.functions)
    assert len(pd.mapping_table) == len(d.mappings)
    assert len(pd.stack_table) == len(d.stacks)
    assert len(pd.link_table) == len(d.links)
    assert tuple(pd.string_table[: len(d.strings)]) == d.strings  # appended, never reordered
    for i, (key, value) in enumerate(d.attributes[1:], 1):
        kv = pd.attribute_table[i]
        assert pd.string_table[kv.key_strindex] == key
        assert getattr(kv.value, kv.value.WhichOneof("value")) == value
    for i, stack in enumerate(d.stacks):
        assert tuple(pd.stack_table[i].location_indices) == stack
    # Samples: values and timestamps kept per merged record.
    total = sum(
        len(s.values)
        for rp in req.resource_profiles
        for s in rp.scope_profiles[0].profiles[0].samples
    )
    assert total == 2000
    assert function_shares(build(decode_request(req))) == function_shares(ps)


def test_round_trip_twice_is_stable() -> None:
    batches = make_batches(1000)
    req1 = encode_profile_set(build(batches), new_profile_id=lambda: b"\x01" * 16)
    req2 = encode_profile_set(build(decode_request(req1)), new_profile_id=lambda: b"\x01" * 16)
    assert validate_request(req2) == []
    # Table order follows sample order, which the decoder groups per process; the entries
    # themselves (resolved through their indices) are the same.
    d1, d2 = req1.dictionary, req2.dictionary
    for table in ("mapping_table", "function_table", "location_table", "stack_table"):
        assert len(getattr(d1, table)) == len(getattr(d2, table)), table
    assert set(d1.string_table) == set(d2.string_table)
    assert batch_shares(decode_request(req2)) == batch_shares(batches)


def test_off_cpu_type_and_window() -> None:
    pt = ProfileType("off_cpu", "off_cpu", "nanoseconds")
    batches = make_batches(100)
    for b in batches:
        b.profile_type = pt
    b = ProfileBuilder(pt)
    for batch in batches:
        b.add_all(batch.samples)
    ps = b.build()
    req = encode_profile_set(ps)
    assert validate_request(req) == []
    prof = req.resource_profiles[0].scope_profiles[0].profiles[0]
    assert not prof.HasField("period_type")
    assert prof.time_unix_nano == ps.start_ns
    assert prof.time_unix_nano + prof.duration_nano == ps.end_ns
    out = decode_request(req)
    assert [o.profile_type.name for o in out] == ["off_cpu"]


def test_validator_finds_problems() -> None:
    req = encode_profile_set(build(make_batches(100)))
    prof = req.resource_profiles[0].scope_profiles[0].profiles[0]
    prof.samples[0].stack_index = 9999
    prof.profile_id = b""
    req.dictionary.attribute_table.append(req.dictionary.attribute_table[1])
    problems = validate_request(req)
    assert any("stack_index 9999 out of range" in p for p in problems)
    assert any("profile_id" in p for p in problems)
    assert any("attribute_table" in p and "duplicates" in p for p in problems)
    # Non-strict mode (the receiver's) still refuses bad indices but not the profile_id.
    lax = validate_request(req, strict=False)
    assert any("stack_index" in p for p in lax) and not any("profile_id" in p for p in lax)


def test_validator_unknown_type_only_strict() -> None:
    req = encode_profile_set(build(make_batches(10)))
    prof = req.resource_profiles[0].scope_profiles[0].profiles[0]
    req.dictionary.string_table.append("alloc_space")
    prof.sample_type.type_strindex = len(req.dictionary.string_table) - 1
    assert any("unexpected sample/period type" in p for p in validate_request(req))
    assert validate_request(req, strict=False) == []


def test_empty_request_is_valid() -> None:
    assert validate_request(ExportProfilesServiceRequest()) == []
    assert decode_request(ExportProfilesServiceRequest()) == []


def test_without_timestamps_values_are_summed() -> None:
    ps = build(make_batches(2000))
    req = encode_profile_set(ps, timestamps=False)
    assert validate_request(req) == []
    samples = [s for rp in req.resource_profiles for s in rp.scope_profiles[0].profiles[0].samples]
    assert all(len(s.values) == 1 and not s.timestamps_unix_nano for s in samples)
    assert sum(s.values[0] for s in samples) == 2000
    assert function_shares(build(decode_request(req))) == function_shares(ps)
