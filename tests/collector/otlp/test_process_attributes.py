"""A process's namespace pid, container id and k8s attributes through OTLP and pprof.

OTLP: resource attributes, decoded back to the same ProcessInfo. pprof: labels read back
with the real `go tool pprof` and the independent decoder; the Pyroscope path
(pprof_message's default) carries no string process labels, which would become series.
"""

from __future__ import annotations

from pathlib import Path

from collector.encoding import encode_pprof, pprof_message
from collector.model import ProcessInfo, ProfileBuilder, Sample, Stack
from collector.otlp import decode_request, encode_profile_set, validate_request
from tests.support import encoding_samples as es
from tests.support.encoding_pprof import decode, go_pprof

CID = "4e4a8c0b7a1f3d2e9c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d"
K8S = (("k8s.container.name", "app"), ("k8s.namespace.name", "shop"), ("k8s.pod.name", "web-1"))
IN_POD = ProcessInfo(
    4242, "app", "/usr/bin/app", container_id=CID, pid_namespaced=7, attributes=K8S
)
HOST = ProcessInfo(100, "app", "/usr/bin/app")


def profile_set():  # type: ignore[no-untyped-def]
    b = ProfileBuilder(es.CPU)
    stack = Stack((es.L_COMPUTE, es.L_MAIN))
    for i, proc in enumerate((IN_POD, IN_POD, HOST)):
        b.add(Sample(stack, proc, proc.pid, 0, "app", es.T0 + i, 1))
    return b.build()


def resource(req, pid: int) -> dict:  # type: ignore[no-untyped-def]
    for rp in req.resource_profiles:
        attrs = {kv.key: kv.value for kv in rp.resource.attributes}
        if attrs["process.pid"].int_value == pid:
            return attrs
    raise AssertionError(f"no resource for pid {pid}")


def test_otlp_resource_attributes() -> None:
    req = encode_profile_set(profile_set())
    assert validate_request(req) == []
    pod = resource(req, 4242)
    assert pod["process.pid.namespaced"].int_value == 7
    assert pod["container.id"].string_value == CID
    for key, value in K8S:
        assert pod[key].string_value == value
    host = resource(req, 100)
    assert "process.pid.namespaced" not in host and "container.id" not in host
    assert not any(k.startswith("k8s.") for k in host)


def test_otlp_round_trip_keeps_them() -> None:
    (batch,) = decode_request(encode_profile_set(profile_set()))
    procs = {s.process for s in batch.samples}
    # start_time is not on the wire; everything else of the process comes back.
    assert ProcessInfo(4242, "app", "/usr/bin/app", "", CID, 0, 7, K8S) in procs
    assert HOST in procs


def test_pprof_file_labels(tmp_path: Path) -> None:
    path = tmp_path / "p.pb.gz"
    path.write_bytes(encode_pprof(profile_set()))
    raw = go_pprof(path, "-raw")
    assert "pid_namespaced:[7 count]" in raw and "pid:[4242 count]" in raw
    assert f"container_id:[{CID}]" in raw
    assert "k8s.pod.name:[web-1]" in raw and "k8s.namespace.name:[shop]" in raw
    # Only the process in the pod carries them: 2 of the 3 samples.
    tags = go_pprof(path, "-tags")
    assert "k8s.pod.name: Total 20.20ms of 30.30ms" in tags
    assert "pid_namespaced: Total 20.20ms of 30.30ms" in tags


def test_pyroscope_path_has_no_string_process_labels() -> None:
    prof = decode(pprof_message(profile_set()))
    strings = list(prof.string_table)
    keys = {strings[lb.key] for s in prof.sample for lb in s.label}
    assert "pid" in keys and "pid_namespaced" in keys  # numbers: Pyroscope keeps none
    assert not keys & {"container_id", "k8s.pod.name", "k8s.namespace.name"}
