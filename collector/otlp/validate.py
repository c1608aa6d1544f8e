"""Check an ExportProfilesServiceRequest against the profiles spec; return the problems found.

Every index is checked before anything dereferences it, so the receiver can run this on
untrusted input and the decoder can then trust the indices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from opentelemetry.proto.profiles.v1development import profiles_pb2 as pb

from collector.otlp import names

MAX_PROBLEMS = 50


class _Problems(list):
    def add(self, msg: str) -> None:
        if len(self) < MAX_PROBLEMS:
            self.append(msg)
        elif len(self) == MAX_PROBLEMS:
            self.append("... more problems not listed")


def _idx(p: _Problems, where: str, idx: int, table: Sequence, name: str) -> bool:
    # Index 0 means "unset" and is allowed even when the table is empty.
    if idx < 0 or (idx >= len(table) and not (idx == 0 and len(table) == 0)):
        p.add(f"{where}: {name} {idx} out of range (table has {len(table)})")
        return False
    return True


def _check_table(p: _Problems, name: str, table: Sequence, zero_ok: Callable[[Any], bool]) -> None:
    if len(table) and not zero_ok(table[0]):
        p.add(f"{name}[0] is not the zero value")
    seen: dict[object, int] = {}
    for i, e in enumerate(table):
        key = e if isinstance(e, str) else e.SerializeToString(deterministic=True)
        j = seen.setdefault(key, i)
        if j != i:
            p.add(f"{name}[{i}] duplicates {name}[{j}]")


def _is_zero(msg: Message) -> bool:
    return msg.ByteSize() == 0


def _zero_link(link: pb.Link) -> bool:
    return not any(link.trace_id) and not any(link.span_id)


def validate_request(req: ExportProfilesServiceRequest, *, strict: bool = True) -> list[str]:
    """Problems in ``req``; empty when it follows the spec.

    ``strict`` also demands what this project's exporters promise: only the known sample types
    (samples/count with cpu/nanoseconds, or off_cpu/nanoseconds), 16-byte profile ids, and
    sample timestamps inside the profile's window. The receiver runs with ``strict=False`` so
    other senders' profile types are accepted.
    """
    p = _Problems()
    d = req.dictionary
    st = d.string_table
    n_profiles = sum(len(sp.profiles) for rp in req.resource_profiles for sp in rp.scope_profiles)
    if n_profiles and not len(st):
        p.add("string_table is empty: entry 0 must be the empty string")
    _check_table(p, "string_table", st, lambda s: s == "")
    _check_table(p, "mapping_table", d.mapping_table, _is_zero)
    _check_table(p, "location_table", d.location_table, _is_zero)
    _check_table(p, "function_table", d.function_table, _is_zero)
    _check_table(p, "attribute_table", d.attribute_table, _is_zero)
    _check_table(p, "stack_table", d.stack_table, _is_zero)
    _check_table(p, "link_table", d.link_table, _zero_link)
    attrs = d.attribute_table
    for i, a in enumerate(attrs):
        _idx(p, f"attribute_table[{i}]", a.key_strindex, st, "key_strindex")
        _idx(p, f"attribute_table[{i}]", a.unit_strindex, st, "unit_strindex")
    for i, m in enumerate(d.mapping_table):
        _idx(p, f"mapping_table[{i}]", m.filename_strindex, st, "filename_strindex")
        for a in m.attribute_indices:
            _idx(p, f"mapping_table[{i}]", a, attrs, "attribute index")
    for i, f in enumerate(d.function_table):
        w = f"function_table[{i}]"
        _idx(p, w, f.name_strindex, st, "name_strindex")
        _idx(p, w, f.system_name_strindex, st, "system_name_strindex")
        _idx(p, w, f.filename_strindex, st, "filename_strindex")
    for i, loc in enumerate(d.location_table):
        w = f"location_table[{i}]"
        _idx(p, w, loc.mapping_index, d.mapping_table, "mapping_index")
        for ln in loc.lines:
            _idx(p, w, ln.function_index, d.function_table, "function_index")
        for a in loc.attribute_indices:
            _idx(p, w, a, attrs, "attribute index")
    for i, s in enumerate(d.stack_table):
        for li in s.location_indices:
            _idx(p, f"stack_table[{i}]", li, d.location_table, "location index")
    for i, lk in enumerate(d.link_table):
        if i and (len(lk.trace_id) != 16 or len(lk.span_id) != 8):
            p.add(f"link_table[{i}]: trace_id must be 16 bytes and span_id 8 bytes")
    for ri, rp in enumerate(req.resource_profiles):
        for si, sp in enumerate(rp.scope_profiles):
            for pi, prof in enumerate(sp.profiles):
                _check_profile(
                    p, f"resource_profiles[{ri}].scope[{si}].profile[{pi}]", prof, d, strict
                )
    return list(p)


def _check_profile(
    p: _Problems, w: str, prof: pb.Profile, d: pb.ProfilesDictionary, strict: bool
) -> None:
    st = d.string_table
    ok = True
    for vt_name in ("sample_type", "period_type"):
        vt = getattr(prof, vt_name)
        ok &= _idx(p, f"{w}.{vt_name}", vt.type_strindex, st, "type_strindex")
        ok &= _idx(p, f"{w}.{vt_name}", vt.unit_strindex, st, "unit_strindex")
    for a in prof.attribute_indices:
        _idx(p, w, a, d.attribute_table, "attribute index")
    if strict:
        if ok:
            key = (
                st[prof.sample_type.type_strindex] if len(st) else "",
                st[prof.sample_type.unit_strindex] if len(st) else "",
                st[prof.period_type.type_strindex] if len(st) else "",
                st[prof.period_type.unit_strindex] if len(st) else "",
            )
            off_cpu = key[:2] == ("off_cpu", "nanoseconds")
            plain = key[2:] == ("", "") and key[:2] in names.VALUE_TYPES
            if key not in names.KNOWN_TYPES and not off_cpu and not plain:
                p.add(f"{w}: unexpected sample/period type {key}")
        if len(prof.profile_id) != 16 or not any(prof.profile_id):
            p.add(f"{w}: profile_id must be 16 bytes, not all zero")
    start = prof.time_unix_nano
    end = start + prof.duration_nano
    for i, s in enumerate(prof.samples):
        sw = f"{w}.samples[{i}]"
        _idx(p, sw, s.stack_index, d.stack_table, "stack_index")
        _idx(p, sw, s.link_index, d.link_table, "link_index")
        for a in s.attribute_indices:
            _idx(p, sw, a, d.attribute_table, "attribute index")
        nv, nt = len(s.values), len(s.timestamps_unix_nano)
        if not nv and not nt:
            p.add(f"{sw}: has neither values nor timestamps")
        elif nv and nt and nv != nt:
            p.add(f"{sw}: {nv} values but {nt} timestamps")
        if (
            strict
            and nt
            and (min(s.timestamps_unix_nano) < start or max(s.timestamps_unix_nano) > end)
        ):
            p.add(f"{sw}: timestamps outside the profile window [{start}, {end}]")
