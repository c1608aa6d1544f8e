"""The kubelet's pod list (GET /pods: a v1 PodList) -> attributes by container id.

Pure functions over parsed JSON, so the mapping rules are tested on pod lists in testdata
without a cluster. The list comes from the node's kubelet, but it is still input: anything
that is not the expected shape is skipped and counted, never trusted to be well formed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from collector.otlp import names

Attributes = tuple[tuple[str, str], ...]

# containerID in a container status: "<runtime>://<id>" (containerd://, docker://, cri-o://).
# Only 64-hex ids can match what collector.proc reads from cgroup paths.
_CONTAINER_ID = re.compile(r"[a-z][a-z0-9.+-]*://([0-9a-f]{64})")
_STATUS_LISTS = ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses")


@dataclass(slots=True)
class PodIndex:
    by_container: dict[str, Attributes] = field(default_factory=dict)
    pods: int = 0
    skipped: int = 0  # pods or container statuses not in the expected shape
    truncated: int = 0  # container ids past max_containers


def _str(obj: Mapping, key: str) -> str:
    v = obj.get(key)
    return v if isinstance(v, str) else ""


def _attrs(**values: str) -> Attributes:
    keys = {
        "pod": names.ATTR_K8S_POD_NAME,
        "uid": names.ATTR_K8S_POD_UID,
        "namespace": names.ATTR_K8S_NAMESPACE_NAME,
        "container": names.ATTR_K8S_CONTAINER_NAME,
        "node": names.ATTR_K8S_NODE_NAME,
    }
    return tuple(sorted((keys[k], v) for k, v in values.items() if v))


def container_ids(status: Mapping) -> list[str]:
    """The ids a container status names: the running one and the previous (restarted) one,
    whose late samples may still arrive."""
    out = []
    last = status.get("lastState")
    terminated = last.get("terminated") if isinstance(last, Mapping) else None
    for raw in (status.get("containerID"), terminated and terminated.get("containerID")):
        if isinstance(raw, str):
            m = _CONTAINER_ID.fullmatch(raw)
            if m:
                out.append(m.group(1))
    return out


def index_pod_list(doc: object, max_containers: int = 65536) -> PodIndex:
    idx = PodIndex()
    items = doc.get("items") if isinstance(doc, Mapping) else None
    if not isinstance(items, list):
        idx.skipped += 1
        return idx
    for pod in items:
        meta = pod.get("metadata") if isinstance(pod, Mapping) else None
        if not isinstance(meta, Mapping) or not _str(meta, "name"):
            idx.skipped += 1
            continue
        idx.pods += 1
        spec = pod.get("spec")
        status = pod.get("status")
        node = _str(spec, "nodeName") if isinstance(spec, Mapping) else ""
        if not isinstance(status, Mapping):
            continue  # pending: no containers yet
        for list_name in _STATUS_LISTS:
            statuses = status.get(list_name) or []
            if not isinstance(statuses, list):
                idx.skipped += 1
                continue
            for cs in statuses:
                if not isinstance(cs, Mapping) or not _str(cs, "name"):
                    idx.skipped += 1
                    continue
                attrs = _attrs(
                    pod=_str(meta, "name"),
                    uid=_str(meta, "uid"),
                    namespace=_str(meta, "namespace"),
                    container=_str(cs, "name"),
                    node=node,
                )
                for cid in container_ids(cs):
                    if len(idx.by_container) >= max_containers:
                        idx.truncated += 1
                        continue
                    idx.by_container[cid] = attrs
    return idx


def downward_api_attributes(
    env: Mapping[str, str], pod_name: str, namespace_name: str, pod_uid: str, node_name: str
) -> Attributes:
    """The collector's own pod from downward-API variables (every process in a sidecar's
    shared PID namespace belongs to it)."""
    return _attrs(
        pod=env.get(pod_name, ""),
        namespace=env.get(namespace_name, ""),
        uid=env.get(pod_uid, ""),
        node=env.get(node_name, ""),
    )
