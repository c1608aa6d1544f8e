"""Attribute keys and type names shared by the encoder, the decoder and the validator."""

from __future__ import annotations

ATTR_PID = "process.pid"
ATTR_EXE_NAME = "process.executable.name"
ATTR_EXE_PATH = "process.executable.path"
ATTR_BUILD_ID_GNU = "process.executable.build_id.gnu"
ATTR_BUILD_ID_GO = "process.executable.build_id.go"
ATTR_CONTAINER_ID = "container.id"
# The pid inside the process's own PID namespace (NSpid's last entry) when the collector sees
# it from an outer one; semantic conventions have no key for it yet.
ATTR_PID_NAMESPACED = "process.pid.namespaced"
ATTR_K8S_POD_NAME = "k8s.pod.name"
ATTR_K8S_POD_UID = "k8s.pod.uid"
ATTR_K8S_NAMESPACE_NAME = "k8s.namespace.name"
ATTR_K8S_CONTAINER_NAME = "k8s.container.name"
ATTR_K8S_NODE_NAME = "k8s.node.name"
K8S_PREFIX = "k8s."
ATTR_SERVICE_NAME = "service.name"
ATTR_FRAME_TYPE = "profile.frame.type"

SCOPE_NAME = "ebpf-profile-collector"

# (sample type, sample unit, period type, period unit) -> profile type short name.
KNOWN_TYPES: dict[tuple[str, str, str, str], str] = {
    ("samples", "count", "cpu", "nanoseconds"): "cpu",
    ("off_cpu", "nanoseconds", "", ""): "off_cpu",
}
# Further (sample type, unit) pairs the receivers write, with no period: the heap receiver's
# (Go's heap profile names) and page faults, the go_runtime receiver's. A profile of several
# values (heap) becomes one OTLP profile per pair. mapped_space: page_faults mode's brk/mmap
# growth.
VALUE_TYPES: frozenset[tuple[str, str]] = frozenset(
    {
        ("alloc_objects", "count"),
        ("alloc_space", "bytes"),
        ("inuse_objects", "count"),
        ("inuse_space", "bytes"),
        ("leak_objects", "count"),
        ("leak_space", "bytes"),
        ("page_faults", "count"),
        ("mapped_space", "bytes"),
        ("goroutines", "count"),
        ("sched_waits", "count"),
        ("sched_latency", "nanoseconds"),
        ("gc_pauses", "count"),
        ("gc_pause", "nanoseconds"),
        ("chan_blocks", "count"),
        ("chan_block", "nanoseconds"),
    }
)


def default_service_name(executable_name: str) -> str:
    """service.name when the exporter does not set one: the executable name, so backends such
    as Pyroscope list one application per program; ``unknown_service`` when even that is unknown."""
    return executable_name or "unknown_service"
