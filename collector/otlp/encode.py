"""ProfileSet -> ExportProfilesServiceRequest.

The model's Dictionary already follows the ProfilesDictionary rules (entry 0 is the zero value,
no duplicates), so its tables map 1:1 onto the wire tables. Only the strings and attributes the
wire format needs on top (resource-free attribute keys, the profile.frame.type location
attribute, the mapping build id, the value type names) are appended to the SAME tables, through
an index that keeps them free of duplicates.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.profiles.v1development import profiles_pb2 as pb

from collector.model import FRAME_NATIVE, ProcessInfo, ProfileSet
from collector.otlp import names


class _Tables:
    """The wire dictionary being filled, with lookup indices for what gets appended."""

    def __init__(self, ps: ProfileSet, out: pb.ProfilesDictionary) -> None:
        d = ps.dictionary
        self.out = out
        out.string_table.extend(d.strings)
        self.strings: dict[str, int] = {}
        for i, s in enumerate(d.strings):
            self.strings.setdefault(s, i)
        self.attrs: dict[tuple[str, object], int] = {}
        out.attribute_table.add()  # entry 0: KeyValueAndUnit{}
        for key, value in d.attributes[1:]:
            self.attr(key, value)

    def string(self, s: str) -> int:
        idx = self.strings.get(s)
        if idx is None:
            idx = len(self.out.string_table)
            self.out.string_table.append(s)
            self.strings[s] = idx
        return idx

    def attr(self, key: str, value: int | str) -> int:
        # The type is part of the key: thread.id=1 and thread.id="1" are different attributes.
        k = (key, type(value).__name__, value)
        idx = self.attrs.get(k)
        if idx is None:
            idx = len(self.out.attribute_table)
            kv = self.out.attribute_table.add()
            kv.key_strindex = self.string(key)
            if isinstance(value, int):
                kv.value.int_value = value
            else:
                kv.value.string_value = value
            self.attrs[k] = idx
        return idx


def _build_id_attr(build_id: str) -> tuple[str, str]:
    is_hex = all(c in "0123456789abcdefABCDEF" for c in build_id)
    return (names.ATTR_BUILD_ID_GNU if is_hex else names.ATTR_BUILD_ID_GO, build_id)


def encode_dictionary(ps: ProfileSet, out: pb.ProfilesDictionary) -> _Tables:
    d = ps.dictionary
    t = _Tables(ps, out)
    s = t.strings
    mapping_index: dict[object, int] = {}
    for i, m in enumerate(d.mappings):
        mapping_index[m] = i
        pm = out.mapping_table.add()
        if i == 0:
            continue
        pm.memory_start = m.start
        pm.memory_limit = m.limit
        pm.file_offset = m.offset
        pm.filename_strindex = s[m.filename]
        if m.build_id:
            pm.attribute_indices.append(t.attr(*_build_id_attr(m.build_id)))
    function_index: dict[object, int] = {}
    for i, f in enumerate(d.functions):
        function_index[f] = i
        pf = out.function_table.add()
        if i == 0:
            continue
        pf.name_strindex = s[f.name]
        pf.system_name_strindex = s[f.system_name]
        pf.filename_strindex = s[f.filename]
        pf.start_line = f.start_line
    frame_attr: dict[str, int] = {}
    for i, loc in enumerate(d.locations):
        pl = out.location_table.add()
        if i == 0:
            continue
        if loc.mapping is not None:
            pl.mapping_index = mapping_index[loc.mapping]
        pl.address = loc.address
        for ln in loc.lines:
            pl.lines.add(function_index=function_index[ln.function], line=ln.line, column=ln.column)
        ft = loc.frame_type or FRAME_NATIVE
        a = frame_attr.get(ft)
        if a is None:
            a = frame_attr[ft] = t.attr(names.ATTR_FRAME_TYPE, ft)
        pl.attribute_indices.append(a)
    for stack in d.stacks:
        out.stack_table.add().location_indices.extend(stack)
    for i, (trace_id, span_id) in enumerate(d.links):
        link = out.link_table.add()
        if i:
            link.trace_id = trace_id
            link.span_id = span_id
    return t


def resource_attributes(proc: ProcessInfo, service_name: str | None) -> list[KeyValue]:
    attrs: list[tuple[str, int | str]] = [(names.ATTR_PID, proc.pid)]
    if proc.executable_name:
        attrs.append((names.ATTR_EXE_NAME, proc.executable_name))
    if proc.executable_path:
        attrs.append((names.ATTR_EXE_PATH, proc.executable_path))
    if proc.build_id:
        attrs.append(_build_id_attr(proc.build_id))
    if proc.container_id:
        attrs.append((names.ATTR_CONTAINER_ID, proc.container_id))
    if proc.pid_namespaced:
        attrs.append((names.ATTR_PID_NAMESPACED, proc.pid_namespaced))
    attrs.extend(proc.attributes)  # added by processors (k8s.*), already sorted
    attrs.append(
        (names.ATTR_SERVICE_NAME, service_name or names.default_service_name(proc.executable_name))
    )
    out = []
    for k, v in attrs:
        av = AnyValue(int_value=v) if isinstance(v, int) else AnyValue(string_value=v)
        out.append(KeyValue(key=k, value=av))
    return out


def encode_profile_set(
    ps: ProfileSet,
    *,
    service_name: str | None = None,
    scope_version: str = "",
    new_profile_id: Callable[[], bytes] = lambda: os.urandom(16),
    timestamps: bool = True,
) -> ExportProfilesServiceRequest:
    """One request for one ProfileSet: a ResourceProfiles per process, one Profile per value
    type in it (OTLP carries one sample type per profile; a heap window's four profiles share
    the request's one dictionary).

    With ``timestamps=False`` each merged sample carries one summed value and no timestamps
    (pprof-like size; the per-sample times are lost). In a profile of several value types, a
    sample whose value of that type is 0 throughout is left out of that type's profile.
    """
    req = ExportProfilesServiceRequest()
    t = encode_dictionary(ps, req.dictionary)
    pt = ps.profile_type
    sample_types = [
        pb.ValueType(type_strindex=t.string(st), unit_strindex=t.string(su))
        for st, su in pt.value_types
    ]
    several = len(sample_types) > 1
    period_type = None
    if pt.period_type or pt.period_unit:
        period_type = pb.ValueType(
            type_strindex=t.string(pt.period_type), unit_strindex=t.string(pt.period_unit)
        )
    profile_attrs = [t.attr("profile.note", note) for note in pt.notes]
    start = ps.start_ns
    duration = max(ps.end_ns - ps.start_ns, 0)
    scope = InstrumentationScope(name=names.SCOPE_NAME, version=scope_version)
    for pp in ps.processes:
        rp = req.resource_profiles.add()
        rp.resource.attributes.extend(resource_attributes(pp.process, service_name))
        sp = rp.scope_profiles.add()
        sp.scope.CopyFrom(scope)
        for k, sample_type in enumerate(sample_types):
            prof = sp.profiles.add()
            prof.sample_type.CopyFrom(sample_type)
            if period_type is not None:
                prof.period_type.CopyFrom(period_type)
                prof.period = pt.period
            prof.time_unix_nano = start
            prof.duration_nano = duration
            prof.profile_id = new_profile_id()
            prof.attribute_indices.extend(profile_attrs)
            add = prof.samples.add
            for rec in pp.samples:  # up to one per sample on a many-CPU host: kept lean
                values = rec.column(k) if k else rec.values
                if several and not any(values):
                    continue
                if timestamps:
                    add(
                        stack_index=rec.stack_index,
                        attribute_indices=rec.attribute_indices,
                        link_index=rec.link_index,
                        values=values,
                        timestamps_unix_nano=rec.timestamps,
                    )
                else:
                    add(
                        stack_index=rec.stack_index,
                        attribute_indices=rec.attribute_indices,
                        link_index=rec.link_index,
                        values=(sum(values),),
                    )
    return req
