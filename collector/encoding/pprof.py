"""pprof (profile.proto) from a ProfileSet, hand-encoded; see profile.proto next to this file.

The string, mapping, location and function tables are the Dictionary's own: entry 0 of each
is the zero value, so table index == pprof id and nothing is re-derived. Strings that only
pprof needs (sample types, label keys, comms) are appended after the Dictionary's strings.
"""

from __future__ import annotations

import gzip

from collector.encoding.protowire import (
    bytes_field,
    packed_field,
    packed_ids,
    uvarint,
    varint_field,
)
from collector.model import Dictionary, ProcessInfo, ProfileSet, ProfileType
from collector.model.profile import ATTR_CPU, ATTR_THREAD_ID, ATTR_THREAD_NAME

# Sample attribute key -> pprof label key (pprof and perf users know these names).
LABEL_KEYS = {ATTR_THREAD_ID: "tid", ATTR_THREAD_NAME: "comm", ATTR_CPU: "cpu"}

NUM_UNIT = "count"
_SAMPLE_TAG = uvarint(2 << 3 | 2)


class _Strings:
    """The Dictionary's (already unique) strings plus any appended here."""

    def __init__(self, base: list[str]) -> None:
        self.table = list(base)
        self.index = dict(zip(self.table, range(len(self.table)), strict=True))

    def __call__(self, s: str) -> int:
        i = self.index.get(s)
        if i is None:
            i = self.index[s] = len(self.table)
            self.table.append(s)
        return i


def sample_types(pt: ProfileType) -> list[tuple[str, str]]:
    """Value types of each pprof sample: the profile's own (all of them when it has several),
    plus count * period in the period's unit when a one-valued profile counts a known period
    (CPU: samples/count and cpu/nanoseconds)."""
    types = list(pt.value_types)
    if (
        not pt.extra_values
        and pt.sample_unit == "count"
        and pt.period > 0
        and pt.period_type
        and pt.period_unit
    ):
        types.append((pt.period_type, pt.period_unit))
    return types


def _value_type(field: int, s: _Strings, t: tuple[str, str]) -> bytes:
    return bytes_field(field, varint_field(1, s(t[0])) + varint_field(2, s(t[1])))


def _label(s: _Strings, key: str, value: int | str) -> bytes:
    if isinstance(value, str):
        body = varint_field(1, s(key)) + varint_field(2, s(value))
    else:
        # pid 0 (the idle task) and cpu 0 are real values, but pprof drops a numeric label
        # whose num and num_unit are both 0: a unit ("count", shown as a plain number) keeps it.
        body = varint_field(1, s(key)) + b"\x18" + uvarint(value) + varint_field(4, s(NUM_UNIT))
    return bytes_field(3, body)


def _tables(ps: ProfileSet, s: _Strings) -> bytes:
    d = ps.dictionary
    out = bytearray()
    mapping_ids = {m: i for i, m in enumerate(d.mappings)}
    function_ids = {f: i for i, f in enumerate(d.functions)}
    # Per mapping: [all symbolized, all with filenames, all with line numbers, any inlined].
    flags = [[True, True, True, False] for _ in d.mappings]
    for li in range(1, len(d.locations)):
        loc = d.locations[li]
        mid = mapping_ids[loc.mapping] if loc.mapping is not None else 0
        body = varint_field(1, li) + varint_field(2, mid) + varint_field(3, loc.address)
        f = flags[mid]
        if not loc.lines:
            f[0] = f[1] = f[2] = False
        if len(loc.lines) > 1:
            f[3] = True
        for ln in loc.lines:
            if not ln.function.filename:
                f[1] = False
            if not ln.line:
                f[2] = False
            line = varint_field(1, function_ids[ln.function]) + varint_field(2, ln.line)
            body += bytes_field(4, line + varint_field(3, ln.column))
        out += bytes_field(4, body)
    for mi in range(1, len(d.mappings)):
        m = d.mappings[mi]
        has_fn, has_files, has_lines, inlined = flags[mi]
        body = (
            varint_field(1, mi)
            + varint_field(2, m.start)
            + varint_field(3, m.limit)
            + varint_field(4, m.offset)
            + varint_field(5, s(m.filename))
            + varint_field(6, s(m.build_id))
            + varint_field(7, has_fn)
            + varint_field(8, has_fn and has_files)
            + varint_field(9, has_fn and has_lines)
            + varint_field(10, has_fn and inlined)
        )
        out += bytes_field(3, body)
    for fi in range(1, len(d.functions)):
        fn = d.functions[fi]
        body = (
            varint_field(1, fi)
            + varint_field(2, s(fn.name))
            + varint_field(3, s(fn.system_name))
            + varint_field(4, s(fn.filename))
            + varint_field(5, fn.start_line)
        )
        out += bytes_field(5, body)
    return bytes(out)


def _process_labels(s: _Strings, proc: ProcessInfo, strings: bool) -> bytes:
    """Labels every sample of ``proc`` carries: pid and the pid in its own namespace (numbers),
    and with ``strings`` its container id and the attributes processors added (k8s.*)."""
    out = _label(s, "pid", proc.pid)
    if proc.pid_namespaced:
        out += _label(s, "pid_namespaced", proc.pid_namespaced)
    if strings:
        if proc.container_id:
            out += _label(s, "container_id", proc.container_id)
        for key, value in proc.attributes:
            out += _label(s, key, value)
    return out


def _samples(ps: ProfileSet, s: _Strings, with_period: bool, process_labels: bool) -> bytes:
    # Per record (up to one per sample on a many-CPU host, where the cpu label splits them):
    # lookups of bytes made once per stack, label set and value, and one join.
    d = ps.dictionary
    period = ps.profile_type.period
    extra = len(ps.profile_type.extra_values)
    out = bytearray()
    stack_bytes: dict[int, bytes] = {}
    location_ids = [uvarint(i) for i in range(len(d.locations))]
    attr_labels: dict[int, bytes] = {}  # attribute index -> its label (b"" for the empty one)
    labels_of: dict[tuple[tuple[int, ...], int], bytes] = {}  # (attributes, link) -> labels
    value_bytes: dict[int, bytes] = {}  # total -> Sample.value field (one-valued types)
    for proc in ps.processes:
        pid_label = _process_labels(s, proc.process, process_labels)
        for rec in proc.samples:
            locs = stack_bytes.get(rec.stack_index)
            if locs is None:
                stack = d.stacks[rec.stack_index]
                locs = stack_bytes[rec.stack_index] = packed_ids(1, stack, location_ids)
            if extra:
                values = b"".join([uvarint(v) for v in rec.totals(extra + 1)])
                values = b"\x12" + uvarint(len(values)) + values
            else:
                total = sum(rec.values)
                values = value_bytes.get(total)
                if values is None:
                    v = uvarint(total) + (uvarint(total * period) if with_period else b"")
                    values = value_bytes[total] = b"\x12" + uvarint(len(v)) + v
            lkey = (rec.attribute_indices, rec.link_index)
            labels = labels_of.get(lkey)
            if labels is None:
                labels = labels_of[lkey] = _labels(s, d, lkey, attr_labels)
            body = locs + values + pid_label + labels
            out += _SAMPLE_TAG
            out += uvarint(len(body))
            out += body
    return bytes(out)


def _labels(
    s: _Strings,
    d: Dictionary,
    key: tuple[tuple[int, ...], int],
    attr_labels: dict[int, bytes],
) -> bytes:
    """The labels of a sample's attributes and link (its process's come first, apart)."""
    parts = []
    for ai in key[0]:
        label = attr_labels.get(ai)
        if label is None:
            k, value = d.attributes[ai]
            label = attr_labels[ai] = _label(s, LABEL_KEYS.get(k, k), value) if k else b""
        parts.append(label)
    if key[1]:
        trace_id, span_id = d.links[key[1]]
        parts.append(_label(s, "trace_id", trace_id.hex()))
        parts.append(_label(s, "span_id", span_id.hex()))
    return b"".join(parts)


def pprof_message(ps: ProfileSet, process_labels: bool = False) -> bytes:
    """The serialized (uncompressed) perftools.profiles.Profile.

    ``process_labels`` adds string labels per process (container_id, k8s.*). Off by default:
    Pyroscope turns every string sample label into a series label, so its exporter keeps its
    own series rules (relabel) instead; pprof files get them (encode_pprof)."""
    pt = ps.profile_type
    s = _Strings(ps.dictionary.strings)
    types = sample_types(pt)
    head = b"".join(_value_type(1, s, t) for t in types)
    samples = _samples(ps, s, len(types) > len(pt.value_types), process_labels)
    tables = _tables(ps, s)
    tail = varint_field(9, ps.start_ns) + varint_field(10, max(ps.end_ns - ps.start_ns, 0))
    if pt.period_type or pt.period_unit:
        tail += _value_type(11, s, (pt.period_type, pt.period_unit))
    tail += varint_field(12, pt.period)
    tail += packed_field(13, [s(n) for n in pt.notes])
    if pt.default_sample_type:
        tail += varint_field(14, s(pt.default_sample_type))
    strings = b"".join(bytes_field(6, x.encode("utf-8", "replace")) for x in s.table)
    return head + samples + tables + strings + tail


def encode_pprof(ps: ProfileSet, gzip_level: int = 6) -> bytes:
    """A ``.pb.gz`` file's content: the gzip-compressed Profile (mtime 0, reproducible), with
    each process's labels (pid, pid_namespaced, container_id, k8s.*)."""
    return gzip.compress(pprof_message(ps, process_labels=True), compresslevel=gzip_level, mtime=0)
