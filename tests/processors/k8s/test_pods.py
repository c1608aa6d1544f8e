"""Mapping rules of the k8s processor on pod lists in the kubelet's /pods format.

testdata/kubelet-pods.json is a v1 PodList as the kubelet serves it, written for these tests
(no cluster runs here): containerd, CRI-O and docker ids, an init container, a container that
restarted (its previous id is kept for late samples), an ephemeral debug container, a static
pod, and pods still pending. Each item is checked against Kubernetes' own Pod JSON schema
(kubernetes-validate, offline), so the shapes are the real API's. kubelet-pods.expected.json
holds the attributes each container id must get.
"""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate

from processors.k8s.pods import downward_api_attributes, index_pod_list

DATA = Path(__file__).parent / "testdata"


def load(name: str) -> object:
    return json.loads((DATA / name).read_text())


def test_pod_list_items_are_valid_pods() -> None:
    doc = load("kubelet-pods.json")
    assert isinstance(doc, dict) and doc["kind"] == "PodList"
    for pod in doc["items"]:
        kubernetes_validate.validate(pod, "1.31", strict=True)


def test_recorded_pod_list_maps_every_container_id() -> None:
    expected = load("kubelet-pods.expected.json")
    idx = index_pod_list(load("kubelet-pods.json"))
    assert idx.pods == expected["pods"] and idx.skipped == 0 and idx.truncated == 0
    got = {cid: dict(attrs) for cid, attrs in idx.by_container.items()}
    assert got == expected["by_container"]
    for attrs in idx.by_container.values():
        assert list(attrs) == sorted(attrs)  # sorted: ProcessInfo.attributes' contract


def test_pending_pods_have_no_containers_yet() -> None:
    idx = index_pod_list(load("kubelet-pods.json"))
    pods = {dict(a)["k8s.pod.name"] for a in idx.by_container.values()}
    assert "starting-5c9d7" not in pods and "scheduled-only" not in pods


def test_malformed_entries_are_skipped_and_counted() -> None:
    idx = index_pod_list(load("kubelet-pods-malformed.json"))
    # 3 pods with a name. Skipped: a string item, metadata that is not an object, a pod
    # without a name, containerStatuses that is not a list, a status that is a number, a
    # status without a name. Ids that are not 64 lower-case hex digits name nothing.
    assert idx.pods == 3 and idx.skipped == 6
    assert [dict(a)["k8s.pod.name"] for a in idx.by_container.values()] == ["metrics-0"]
    for doc in (None, [], "x", {"items": "x"}, {"items": None}):
        bad = index_pod_list(doc)
        assert bad.by_container == {} and bad.skipped == 1


def test_max_containers_bounds_the_index() -> None:
    idx = index_pod_list(load("kubelet-pods.json"), max_containers=3)
    assert len(idx.by_container) == 3 and idx.truncated == 6


def test_downward_api_names_the_collectors_own_pod() -> None:
    env = {"MY_POD": "web-1", "MY_NS": "shop", "MY_UID": "u-1", "OTHER": "x"}
    attrs = downward_api_attributes(env, "MY_POD", "MY_NS", "MY_UID", "MY_NODE")
    assert attrs == (
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.name", "web-1"),
        ("k8s.pod.uid", "u-1"),
    )
    assert downward_api_attributes({}, "A", "B", "C", "D") == ()
