"""ExportProfilesServiceRequest -> SymbolizedBatch objects (one per profile type).

Run ``validate_request`` first: the decoder trusts that indices are in range.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.profiles.v1development import profiles_pb2 as pb

from collector.model import (
    FRAME_NATIVE,
    Function,
    Line,
    Location,
    Mapping,
    ProcessInfo,
    ProfileType,
    Sample,
    Stack,
    SymbolizedBatch,
)
from collector.model.profile import ATTR_CPU, ATTR_THREAD_ID, ATTR_THREAD_NAME
from collector.otlp import names


def _any(v: AnyValue) -> int | str | float | bool | None:
    kind = v.WhichOneof("value")
    if kind in ("int_value", "string_value", "double_value", "bool_value"):
        return getattr(v, kind)
    return None


class _Dict:
    """The request's dictionary turned into model objects, each built once per request."""

    def __init__(self, d: pb.ProfilesDictionary) -> None:
        st = d.string_table
        self.strings = st
        self.attrs: list[tuple[str, object]] = [
            (st[a.key_strindex] if a.key_strindex < len(st) else "", _any(a.value))
            for a in d.attribute_table
        ]
        self.mappings: list[Mapping | None] = [None]
        for m in d.mapping_table[1:]:
            build_id = ""
            for ai in m.attribute_indices:
                k, v = self.attrs[ai]
                if k in (names.ATTR_BUILD_ID_GNU, names.ATTR_BUILD_ID_GO) and isinstance(v, str):
                    build_id = v
            self.mappings.append(
                Mapping(
                    m.memory_start, m.memory_limit, m.file_offset, st[m.filename_strindex], build_id
                )
            )
        self.functions = [Function("")] + [
            Function(
                st[f.name_strindex],
                st[f.system_name_strindex],
                st[f.filename_strindex],
                f.start_line,
            )
            for f in d.function_table[1:]
        ]
        self.locations: list[Location] = [Location(None, 0)]
        for loc in d.location_table[1:]:
            ft = FRAME_NATIVE
            for ai in loc.attribute_indices:
                k, v = self.attrs[ai]
                if k == names.ATTR_FRAME_TYPE and isinstance(v, str):
                    ft = v
            lines = tuple(
                Line(self.functions[ln.function_index], ln.line, ln.column) for ln in loc.lines
            )
            self.locations.append(
                Location(
                    self.mappings[loc.mapping_index] if loc.mapping_index else None,
                    loc.address,
                    lines,
                    ft,
                )
            )
        self.stacks = [
            Stack(tuple(self.locations[i] for i in s.location_indices)) for s in d.stack_table
        ]
        self.links = [(bytes(lk.trace_id), bytes(lk.span_id)) for lk in d.link_table]


def _process(resource_attrs: Iterable[KeyValue]) -> tuple[ProcessInfo, str]:
    a = {kv.key: _any(kv.value) for kv in resource_attrs}

    def s(key: str) -> str:
        v = a.get(key)
        return v if isinstance(v, str) else ""

    pid = a.get(names.ATTR_PID)
    pid = pid if isinstance(pid, int) else 0
    ns_pid = a.get(names.ATTR_PID_NAMESPACED)
    proc = ProcessInfo(
        pid=pid,
        executable_name=s(names.ATTR_EXE_NAME),
        executable_path=s(names.ATTR_EXE_PATH),
        build_id=s(names.ATTR_BUILD_ID_GNU) or s(names.ATTR_BUILD_ID_GO),
        container_id=s(names.ATTR_CONTAINER_ID),
        pid_namespaced=ns_pid if isinstance(ns_pid, int) else 0,
        attributes=tuple(
            sorted(
                (k, v)
                for k, v in a.items()
                if k.startswith(names.K8S_PREFIX) and isinstance(v, str)
            )
        ),
    )
    return proc, s(names.ATTR_SERVICE_NAME)


def profile_type(prof: pb.Profile, strings: Sequence[str]) -> ProfileType:
    def vt(v: pb.ValueType) -> tuple[str, str]:
        return strings[v.type_strindex], strings[v.unit_strindex]

    st, su = vt(prof.sample_type)
    pt, pu = vt(prof.period_type) if prof.HasField("period_type") else ("", "")
    name = names.KNOWN_TYPES.get((st, su, pt, pu)) or (st if st != "samples" else pt) or "unknown"
    return ProfileType(name, st, su, pt, pu, prof.period)


def decode_request(
    req: ExportProfilesServiceRequest, receiver_id: str = ""
) -> list[SymbolizedBatch]:
    d = _Dict(req.dictionary)
    batches: dict[ProfileType, SymbolizedBatch] = {}
    for rp in req.resource_profiles:
        proc, _service = _process(rp.resource.attributes)
        for sp in rp.scope_profiles:
            for prof in sp.profiles:
                ptype = profile_type(prof, d.strings)
                batch = batches.get(ptype)
                if batch is None:
                    batch = batches[ptype] = SymbolizedBatch(ptype, [], receiver_id)
                _samples(prof, d, proc, batch.samples)
    return list(batches.values())


def _samples(prof: pb.Profile, d: _Dict, proc: ProcessInfo, out: list[Sample]) -> None:
    for s in prof.samples:
        tid = cpu = 0
        thread_name = ""
        for ai in s.attribute_indices:
            k, v = d.attrs[ai]
            if k == ATTR_THREAD_ID and isinstance(v, int):
                tid = v
            elif k == ATTR_THREAD_NAME and isinstance(v, str):
                thread_name = v
            elif k == ATTR_CPU and isinstance(v, int):
                cpu = v
        trace_id, span_id = d.links[s.link_index] if s.link_index else (b"", b"")
        stack = d.stacks[s.stack_index] if s.stack_index < len(d.stacks) else Stack(())
        values = s.values
        stamps = s.timestamps_unix_nano
        n = max(len(values), len(stamps))
        for i in range(n):
            out.append(
                Sample(
                    stack=stack,
                    process=proc,
                    tid=tid,
                    cpu=cpu,
                    comm=thread_name,
                    time_ns=stamps[i] if stamps else prof.time_unix_nano,
                    value=values[i] if values else 1,
                    trace_id=trace_id,
                    span_id=span_id,
                    thread_name=thread_name,
                )
            )
