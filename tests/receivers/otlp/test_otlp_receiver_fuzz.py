"""Malformed input over gRPC and HTTP: refused with a reason, never fatal, bounded in time."""

from __future__ import annotations

import asyncio
import gzip
import random
from collections.abc import Callable

import grpc
import pytest
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)

from collector.host import Host
from collector.sending.rpc_status import Status
from tests.receivers.otlp.test_otlp_receiver import (
    PROFILES,
    grpc_call,
    http_post,
    receiver,
    valid_request,
)
from tests.support.otlp_servers import ListConsumer

MAX = 1 << 20
Mutation = Callable[[ExportProfilesServiceRequest], None]


def _prof(r: ExportProfilesServiceRequest):
    return r.resource_profiles[0].scope_profiles[0].profiles[0]


MUTATIONS: dict[str, Mutation] = {
    "stack_index": lambda r: setattr(_prof(r).samples[0], "stack_index", 10_000),
    "link_index": lambda r: setattr(_prof(r).samples[0], "link_index", 999),
    "sample_attr": lambda r: _prof(r).samples[0].attribute_indices.append(77_777),
    "location_index": lambda r: r.dictionary.stack_table[1].location_indices.append(5_000),
    "mapping_index": lambda r: setattr(r.dictionary.location_table[1], "mapping_index", 400),
    "function_index": lambda r: setattr(
        r.dictionary.location_table[1].lines[0], "function_index", 300
    ),
    "name_strindex": lambda r: setattr(r.dictionary.function_table[1], "name_strindex", 10**6),
    "filename_strindex": lambda r: setattr(
        r.dictionary.mapping_table[1], "filename_strindex", 10**6
    ),
    "attr_key": lambda r: setattr(r.dictionary.attribute_table[1], "key_strindex", 10**6),
    "sample_type": lambda r: setattr(_prof(r).sample_type, "type_strindex", 10**6),
    "string0": lambda r: r.dictionary.string_table.__setitem__(0, "x"),
    "mapping0": lambda r: setattr(r.dictionary.mapping_table[0], "memory_start", 1),
    "stack0": lambda r: r.dictionary.stack_table[0].location_indices.append(1),
    "dup_string": lambda r: r.dictionary.string_table.append(r.dictionary.string_table[1]),
    "dup_function": lambda r: r.dictionary.function_table.append(r.dictionary.function_table[1]),
    "lengths": lambda r: _prof(r).samples[0].values.append(3),
    "empty_sample": lambda r: (
        _prof(r).samples[0].ClearField("values"),
        _prof(r).samples[0].ClearField("timestamps_unix_nano"),
    ),
    "short_link": lambda r: setattr(r.dictionary.link_table[1], "trace_id", b"\x01"),
    "no_strings": lambda r: r.dictionary.ClearField("string_table"),
}


async def _both(port_g: int, port_h: int, body: bytes) -> tuple[grpc.StatusCode, int, str]:
    code, why = await grpc_call(port_g, PROFILES, body)
    status, hbody = await http_post(port_h, "/v1development/profiles", body)
    reason = Status.FromString(hbody).message if status != 200 else ""
    return code, status, why.decode() + " | " + reason


@pytest.mark.timeout(120)
def test_fuzzing_never_kills_the_receiver() -> None:
    rnd = random.Random(4317)

    async def main() -> Host:
        consumer = ListConsumer()
        rcv = receiver(consumer, max_recv_msg_size=MAX)
        host = Host()
        await rcv.start(host)
        g, h = rcv.grpc_port, rcv.http_port
        base = valid_request(300)
        good = base.SerializeToString()

        async def still_serving() -> None:
            before = len(consumer.batches)
            code, status, why = await _both(g, h, good)
            assert code == grpc.StatusCode.OK and status == 200, why
            assert len(consumer.batches) == before + 2

        # Targeted: every out-of-range index and spec violation is refused with a reason.
        for name, mutate in MUTATIONS.items():
            r = ExportProfilesServiceRequest()
            r.CopyFrom(base)
            mutate(r)
            code, status, why = await _both(g, h, r.SerializeToString())
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (name, code, why)
            assert status == 400, (name, status, why)
            assert why.strip(" |"), name
        await still_serving()

        # Random bytes, truncations and bit flips: refused or (rarely) still valid, never
        # anything else.
        outcomes = {"invalid": 0, "ok": 0}
        for i in range(150):
            kind = i % 3
            if kind == 0:
                body = rnd.randbytes(rnd.randrange(1, 400))
            elif kind == 1:
                body = good[: rnd.randrange(1, len(good))]
            else:
                b = bytearray(good)
                for _ in range(rnd.randrange(1, 8)):
                    b[rnd.randrange(len(b))] ^= 1 << rnd.randrange(8)
                body = bytes(b)
            code, status, why = await _both(g, h, body)
            assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), (i, code, why)
            assert status in (200, 400), (i, status, why)
            assert (code == grpc.StatusCode.OK) == (status == 200), (i, code, status)
            outcomes["ok" if status == 200 else "invalid"] += 1
        assert outcomes["invalid"] >= 100, outcomes
        await still_serving()

        # Huge string tables: over the limit -> RESOURCE_EXHAUSTED / 413; gzip bombs too.
        r = ExportProfilesServiceRequest()
        r.CopyFrom(base)
        r.dictionary.string_table.extend(f"s{i:07d}" for i in range(200_000))
        huge = r.SerializeToString()
        assert len(huge) > MAX
        code, why = await grpc_call(g, PROFILES, huge)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, why
        status, _ = await http_post(h, "/v1development/profiles", huge)
        assert status == 413
        bomb = gzip.compress(b"\x00" * (20 * MAX))
        status, _ = await http_post(
            h, "/v1development/profiles", bomb, **{"Content-Encoding": "gzip"}
        )
        assert status == 413, status
        # A large but allowed string table full of duplicates is refused for the duplicates.
        r = ExportProfilesServiceRequest()
        r.CopyFrom(base)
        r.dictionary.string_table.extend(["same"] * 50_000)
        code, status, why = await _both(g, h, r.SerializeToString())
        assert code == grpc.StatusCode.INVALID_ARGUMENT and status == 400
        assert "duplicates" in why
        await still_serving()
        await rcv.shutdown()
        return host

    host = asyncio.run(main())
    assert host.counters.get("otlp", "refused_requests_invalid") >= 2 * len(MUTATIONS)
    assert host.counters.get("otlp", "refused_requests_oversized") >= 1
