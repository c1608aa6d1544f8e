"""Series labels for Pyroscope: ``__name__`` per profile type, ``service_name`` per process,
static labels, then Prometheus-style relabel rules over the process's attributes.

Pyroscope keys a series by its whole label set, so anything per process or per thread (pid,
tid) must not become a label: the process attributes are offered to the rules as ``__meta_*``
labels, which (as in Prometheus) are removed after relabelling unless copied to a plain name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from collector.model import ProcessInfo, ProfileType
from exporters.pyroscope.config import MAX_VALUE_LENGTH, PyroscopeConfig, RelabelRule

META_PID = "__meta_process_pid"
META_COMM = "__meta_process_comm"
META_EXE = "__meta_process_exe"
META_CONTAINER = "__meta_container_id"
UNKNOWN_SERVICE = "unknown_service"

# Profile type short name -> Pyroscope's __name__ (the names its ingest adapter and Alloy use).
NAMES = {
    "cpu": "process_cpu",
    "off_cpu": "off_cpu",
    "wall": "wall",
    "heap": "memory",
    "memory": "memory",
    "alloc": "memory",
    "inuse": "memory",
    "goroutine": "goroutine",
    "goroutines": "goroutine",
    "mutex": "mutex",
    "block": "block",
}
_MEMORY_SAMPLE_TYPES = ("alloc_objects", "alloc_space", "inuse_objects", "inuse_space")
_NOT_METRIC = re.compile(r"[^a-zA-Z0-9_:]")
_GROUP_REF = re.compile(r"\$(\d+|\{(\w+)\})")
_CACHE_LIMIT = 8192  # processes remembered; cleared when full, so memory stays bounded

Labels = tuple[tuple[str, str], ...]  # sorted by name, no duplicates


def profile_name(pt: ProfileType) -> str:
    """``__name__`` for a profile type: Pyroscope's name when it has one, else the type's own
    name made a valid metric name."""
    name = NAMES.get(pt.name)
    if name is None and pt.sample_type in _MEMORY_SAMPLE_TYPES:
        name = "memory"
    if name is None:
        name = _NOT_METRIC.sub("_", pt.name) or "unknown"
        if name[0].isdigit():
            name = "_" + name
    return name


def _expand(template: str, m: re.Match[str]) -> str:
    """Go's regexp.Expand as Prometheus uses it: ``$1``, ``${1}``, ``${name}``; an unknown
    group expands to the empty string."""

    def one(ref: re.Match[str]) -> str:
        key = ref.group(2) or ref.group(1)
        try:
            value = m.group(int(key) if key.isdigit() else key)
        except IndexError:  # no such group
            return ""
        return value or ""

    return _GROUP_REF.sub(one, template)


@dataclass(slots=True)
class _Rule:
    rule: RelabelRule
    regex: re.Pattern[str]

    def apply(self, labels: dict[str, str]) -> bool:
        """Change ``labels`` in place; False when the series is dropped."""
        r = self.rule
        value = r.separator.join(labels.get(n, "") for n in r.source_labels)
        m = self.regex.fullmatch(value)  # Prometheus anchors the regex at both ends
        if r.action == "keep":
            return m is not None
        if r.action == "drop":
            return m is None
        if m is not None:
            out = _expand(r.replacement, m)
            if out:
                labels[r.target_label] = out
            else:
                labels.pop(r.target_label, None)  # an empty value removes the label
        return True


class Labeler:
    """Labels of each process's series, cached per (process, profile type).

    ``sanitize`` adapts values to the protocol (the ingest API's name syntax is stricter).
    Counts ``truncated`` label values (over Pyroscope's 2048-byte limit)."""

    def __init__(self, config: PyroscopeConfig, sanitize: Callable[[str, str], str]) -> None:
        self.config = config
        self.rules = [_Rule(r, re.compile(r.regex)) for r in config.relabel]
        self.sanitize = sanitize
        self.truncated = 0
        self._cache: dict[tuple[ProcessInfo, str], Labels | None] = {}

    def labels(self, proc: ProcessInfo, pt: ProfileType) -> Labels | None:
        """The series labels for ``proc``'s samples of type ``pt``; None if a rule drops it."""
        name = profile_name(pt)
        key = (proc, name)
        if key in self._cache:
            return self._cache[key]
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        out = self._cache[key] = self._build(proc, name)
        return out

    def _build(self, proc: ProcessInfo, name: str) -> Labels | None:
        service = self.config.service_name or proc.executable_name or UNKNOWN_SERVICE
        labels = {
            META_PID: str(proc.pid),
            META_COMM: proc.executable_name,
            META_EXE: proc.executable_path,
            "service_name": service,
            **self.config.labels,
            "__name__": name,
        }
        if proc.container_id:
            labels[META_CONTAINER] = proc.container_id
        for rule in self.rules:
            if not rule.apply(labels):
                return None
        labels["__name__"] = name  # rules cannot rename the profile type
        if not labels.get("service_name"):
            labels["service_name"] = UNKNOWN_SERVICE  # Pyroscope refuses a series without it
        out = []
        for k, v in labels.items():
            if k.startswith("__") and k != "__name__":
                continue
            v = self.sanitize(k, v)
            if len(v.encode()) > MAX_VALUE_LENGTH:
                self.truncated += 1
                v = v.encode()[:MAX_VALUE_LENGTH].decode("utf-8", "ignore")
            if v:
                out.append((k, v))
        return tuple(sorted(out))


def push_value(name: str, value: str) -> str:
    """Push labels are protobuf strings: any valid UTF-8 (a path with undecodable bytes was
    read with surrogate escapes; those become U+FFFD)."""
    return value.encode("utf-8", "replace").decode("utf-8")


_INGEST_APP = re.compile(r"[^a-zA-Z0-9_./-]")
_INGEST_VALUE = re.compile(r"[,{}=\s]")


def ingest_value(name: str, value: str) -> str:
    """/ingest carries labels in ``name=app{k=v,...}``: the app name allows only
    [a-zA-Z0-9_./-], and a value cannot hold ``,`` or ``}`` (the parser ends it there) nor
    outer spaces (trimmed). Each such character becomes ``_``."""
    value = push_value(name, value)
    if name == "service_name":
        return _INGEST_APP.sub("_", value)
    return _INGEST_VALUE.sub("_", value)


def ingest_name(labels: Labels) -> str:
    """The ``name`` query parameter: ``service{k=v,...}``, without __name__ (Pyroscope takes
    the type from the pprof's sample types) and service_name (it is the app name)."""
    d = dict(labels)
    rest = ",".join(f"{k}={v}" for k, v in labels if k not in ("__name__", "service_name"))
    return f"{d.get('service_name', UNKNOWN_SERVICE)}{{{rest}}}"
