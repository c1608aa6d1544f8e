"""The pyroscope exporter against the loopback Pyroscope stand-in (tests/support).

Every body is decoded and checked as Pyroscope checks it; `go tool pprof` reads the profiles
the server received. Samples come from tests/support/encoding_samples (known folded totals).
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from collector.encoding import folded_totals
from collector.host import Host
from collector.model import (
    Function,
    Line,
    Location,
    Mapping,
    ProcessInfo,
    ProfileBuilder,
    ProfileSet,
    Sample,
    Stack,
    cpu_profile_type,
)
from exporters.pyroscope import factory
from tests.support import encoding_samples as es
from tests.support.encoding_pprof import go_pprof
from tests.support.otlp_run import create, fast_retry
from tests.support.pyroscope_server import Answer, PyroscopeServer

CPU = cpu_profile_type(99)


async def _export_to(url: str, sets: list[ProfileSet], **cfg: Any) -> Host:
    config = {"endpoint": url, "retry_on_failure": fast_retry(), **cfg}
    exp = create(factory, config)
    host = Host()
    await exp.start(host)
    for ps in sets:
        await exp.export(ps)
    await exp.shutdown()
    return host


def run(srv: PyroscopeServer, sets: list[ProfileSet], **cfg: Any) -> Host:
    return asyncio.run(_export_to(srv.url, sets, **cfg))


def counter(host: Host, name: str) -> int:
    return host.counters.get("pyroscope", name)


def top(tmp_path: Path, raw: bytes) -> dict[str, int]:
    """Flat samples per function, as `go tool pprof -top` reads the received profile."""
    f = tmp_path / "received.pb"
    f.write_bytes(raw)
    out = go_pprof(f, "-top", "-sample_index=samples", "-nodefraction=0", "-nodecount=100000")
    flat = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+[\d.]+%\s+[\d.]+%\s+\d+\s+[\d.]+%\s+(\S.*)$", line)
        if m and int(m.group(1)):
            flat[m.group(2).strip().removesuffix(" (inline)")] = int(m.group(1))
    return flat


def deep_set(depth: int, copies: int = 1) -> ProfileSet:
    exe = Mapping(0x400000, 0x500000, 0, "/usr/bin/deep")
    frames = tuple(Location(exe, 0x400000 + i, (Line(Function(f"f{i}")),)) for i in range(depth))
    proc = ProcessInfo(7, "deep", "/usr/bin/deep")
    b = ProfileBuilder(CPU)
    b.add_all(Sample(Stack(frames), proc, 7, 0, "deep", es.T0 + i, 1) for i in range(copies))
    return b.build()


def many_stacks(n: int, pid: int = 9) -> ProfileSet:
    """n distinct stacks, 3 frames each, one sample each, one process."""
    exe = Mapping(0x400000, 0x900000, 0, "/usr/bin/many")
    main = Location(exe, 0x400010, (Line(Function("main")),))
    proc = ProcessInfo(pid, "many", "/usr/bin/many")
    b = ProfileBuilder(CPU)
    for i in range(n):
        leaf = Location(exe, 0x500000 + i, (Line(Function(f"leaf_function_number_{i}")),))
        mid = Location(exe, 0x480000 + i % 50, (Line(Function(f"mid{i % 50}")),))
        b.add(Sample(Stack((leaf, mid, main)), proc, pid, 0, "many", es.T0 + i, 1))
    return b.build()


def test_push_one_series_per_service_read_by_go_pprof(tmp_path: Path) -> None:
    with PyroscopeServer() as srv:
        host = run(srv, [es.profile_set()], labels={"env": "prod"})
    assert srv.problems == [] and srv.attempts == 1
    got = {s.labels["service_name"]: s for s in srv.received()}
    assert set(got) == {"app", "unknown_service"}
    for s in got.values():
        assert s.protocol == "push"
        assert s.labels == {
            "__name__": "process_cpu",
            "service_name": s.labels["service_name"],
            "env": "prod",
        }
    # The app's profile holds only the app's samples: main 2 flat (unresolved libc frame
    # aside), square 8, ksys_write 4; the other service's stack is not in it.
    flat = top(tmp_path, got["app"].raw)
    assert flat == {"square": 8, "ksys_write": 4, "[libc.so.6]": 2}, flat
    names = {got["app"].profile.string_table[f.name] for f in got["app"].profile.function}
    assert "main" in names and "work" in names
    assert counter(host, "sent_samples") == 15 and counter(host, "profiles_encoded") == 2
    assert counter(host, "sent_requests") == 1


def test_ingest_puts_labels_in_the_name(tmp_path: Path) -> None:
    with PyroscopeServer() as srv:
        host = run(srv, [es.profile_set()], protocol="ingest", labels={"env": "prod"})
    assert srv.problems == []
    got = {s.labels["service_name"]: s for s in srv.received()}
    app = got["app"]
    assert app.protocol == "ingest"
    assert app.query["name"] == "app{env=prod}"
    assert app.query["format"] == "pprof" and app.query["spyName"] == "ebpfspy"
    assert app.query["sampleRate"] == "99"
    assert int(app.query["from"]) <= es.T0 // 10**9 < int(app.query["until"])
    assert app.labels["__name__"] == "process_cpu" and app.labels["env"] == "prod"
    assert top(tmp_path, app.raw)["square"] == 8
    assert counter(host, "sent_requests") == 2  # one POST per series


def test_samples_carry_no_thread_or_trace_labels() -> None:
    # Pyroscope makes every string sample label a series label: none may be sent.
    with PyroscopeServer() as srv:
        run(srv, [es.profile_set()])
    for s in srv.received():
        keys = {s.profile.string_table[lb.key] for sm in s.profile.sample for lb in sm.label}
        assert keys <= {"pid"}, keys
        assert all(lb.str == 0 for sm in s.profile.sample for lb in sm.label)


def test_off_cpu_is_named_off_cpu() -> None:
    with PyroscopeServer() as srv:
        run(srv, [es.profile_set(es.OFF_CPU, value=1000)])
    assert {s.labels["__name__"] for s in srv.received()} == {"off_cpu"}


def test_basic_auth_and_tenant() -> None:
    with PyroscopeServer(basic_auth=("u", "right")) as srv:
        auth = {"username": "u", "password": "right"}
        run(srv, [es.profile_set()], basic_auth=auth, tenant_id="t")
    assert len(srv.received()) == 2 and {s.tenant for s in srv.received()} == {"t"}


def test_bearer_token() -> None:
    with PyroscopeServer(bearer_token="tok") as srv:
        run(srv, [es.profile_set()], bearer_token="tok")
    assert len(srv.received()) == 2
    assert srv.headers[0]["Authorization"] == "Bearer tok"


def test_401_is_one_counted_error_not_a_retry_storm(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with PyroscopeServer(basic_auth=("u", "right")) as srv:
        sets = [es.profile_set() for _ in range(5)]
        host = run(srv, sets, basic_auth={"username": "u", "password": "wrong"})
    assert srv.attempts == 5  # one request per window, none retried
    assert srv.received() == []
    assert counter(host, "retries") == 0
    assert counter(host, "failed_requests_permanent") == 5
    assert counter(host, "failed_samples_permanent") == 5 * 15
    # One line at the first failure; further ones are counted (and at most summarised once
    # at shutdown, as the rate-limited failure log does).
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    first = [m for m in errors if "suppressed=" not in m]
    assert len(first) == 1 and len(errors) <= 2, errors
    msg = first[0]
    assert "status=401" in msg and "unauthenticated" in msg and "basic_auth" in msg
    assert "wrong" not in caplog.text  # the password is never logged


def test_503_is_retried_then_delivered() -> None:
    with PyroscopeServer(script=[Answer(503, "unavailable")]) as srv:
        host = run(srv, [es.profile_set()])
    assert srv.attempts == 2 and len(srv.received()) == 2
    assert counter(host, "retries") == 1 and counter(host, "sent_samples") == 15


def test_400_is_permanent() -> None:
    with PyroscopeServer(script=[Answer(400, "invalid_argument")]) as srv:
        host = run(srv, [es.profile_set()])
    assert srv.attempts == 1 and counter(host, "failed_samples_permanent") == 15


def test_deep_stacks_keep_the_leaf_side(tmp_path: Path) -> None:
    with PyroscopeServer() as srv:
        host = run(srv, [deep_set(1500, copies=3)])
    assert srv.problems == []
    (s,) = srv.received()
    p = s.profile
    (sample,) = p.sample
    assert len(sample.location_id) == 1000
    loc = {x.id: x for x in p.location}
    fn = {f.id: p.string_table[f.name] for f in p.function}
    names = [fn[loc[i].line[0].function_id] for i in sample.location_id]
    assert names[0] == "f0" and names[998] == "f998" and names[-1] == "[truncated]"
    assert counter(host, "samples_stack_truncated") == 3
    assert top(tmp_path, s.raw) == {"f0": 3}


def test_a_series_over_max_bytes_is_split_and_nothing_is_lost() -> None:
    with PyroscopeServer() as srv:
        host = run(srv, [many_stacks(3000)], max_bytes=64 * 1024)
    assert srv.problems == []
    got = srv.received()
    assert len(got) > 2
    assert all(len(s.raw) <= 64 * 1024 for s in got)
    assert sum(v for s in got for sm in s.profile.sample for v in sm.value[:1]) == 3000
    assert {s.labels["service_name"] for s in got} == {"many"}
    assert counter(host, "profiles_split") == len(got) - 1
    assert counter(host, "sent_samples") == 3000
    # Each body (a PushRequest) also stays within max_bytes.
    assert all(int(h.get("Content-Length", "0")) <= 64 * 1024 for h in srv.headers)


def test_max_profile_samples() -> None:
    with PyroscopeServer() as srv:
        host = run(srv, [many_stacks(20_000)])
    assert srv.problems == []
    sizes = sorted(len(s.profile.sample) for s in srv.received())
    assert sizes == [10_000, 10_000], sizes
    assert counter(host, "sent_samples") == 20_000


def test_relabel_rules() -> None:
    ps = es.profile_set()
    rules = [
        # service_name from the executable path, and the pid as a label for this test
        {"source_labels": ["__meta_process_exe"], "regex": "/usr/bin/(.*)",
         "target_label": "service_name", "replacement": "svc-$1"},
        {"source_labels": ["__meta_process_pid"], "target_label": "pid"},
        {"source_labels": ["__meta_process_comm"], "regex": "", "action": "drop"},
    ]  # fmt: skip
    with PyroscopeServer() as srv:
        host = run(srv, [ps], relabel=rules)
    (s,) = srv.received()
    assert s.labels == {"__name__": "process_cpu", "service_name": "svc-app", "pid": "100"}
    assert counter(host, "dropped_samples_relabel") == 1  # the nameless process
    keep = [{"source_labels": ["__meta_process_comm"], "regex": "sl.*", "action": "keep"}]
    with PyroscopeServer() as srv:
        host = run(srv, [ps], relabel=keep)
    assert srv.received() == [] and counter(host, "dropped_samples_relabel") == 15


def test_container_id_can_become_a_label() -> None:
    proc = ProcessInfo(5, "web", "/srv/web", container_id="abc123")
    b = ProfileBuilder(CPU)
    b.add(Sample(Stack((es.L_MAIN,)), proc, 5, 0, "web", es.T0, 1))
    rules = [{"source_labels": ["__meta_container_id"], "target_label": "container_id"}]
    with PyroscopeServer() as srv:
        run(srv, [b.build()], relabel=rules)
    (s,) = srv.received()
    assert s.labels["container_id"] == "abc123" and s.labels["service_name"] == "web"


def test_odd_names_are_made_valid_for_ingest() -> None:
    proc = ProcessInfo(5, "my app,v{2}", "/srv/x")
    b = ProfileBuilder(CPU)
    b.add(Sample(Stack((es.L_MAIN,)), proc, 5, 0, "x", es.T0, 1))
    with PyroscopeServer() as srv:
        run(srv, [b.build()], protocol="ingest", labels={"team": "a"})
    assert srv.problems == []
    (s,) = srv.received()
    assert s.labels["service_name"] == "my_app_v_2_"


def test_totals_match_the_window_for_every_service(tmp_path: Path) -> None:
    ps = es.profile_set(scale=7)
    with PyroscopeServer() as srv:
        run(srv, [ps])
    want = sum(folded_totals(ps).values())
    got = sum(v for s in srv.received() for sm in s.profile.sample for v in sm.value[:1])
    assert got == want == 15 * 7


@pytest.mark.parametrize("protocol", ["push", "ingest"])
def test_requests_survive_a_restart_in_the_persistent_queue(tmp_path: Path, protocol: str) -> None:
    # Each request is one bytes payload (ingest: query, newline, body), so the sending
    # queue's storage keeps it; nothing listens on the first endpoint.
    with PyroscopeServer() as closed:
        down = closed.url
    queue = {"storage": {"directory": str(tmp_path / "q")}}
    slow = fast_retry(max_elapsed_time="1h")
    first = asyncio.run(
        _export_to(down, [es.profile_set()], protocol=protocol, sending_queue=queue,
                   retry_on_failure=slow, shutdown_timeout="200ms")
    )  # fmt: skip
    assert counter(first, "sent_samples") == 0
    with PyroscopeServer() as srv:
        second = asyncio.run(_export_to(srv.url, [], protocol=protocol, sending_queue=queue))
    assert srv.problems == [] and counter(second, "sent_samples") == 15
    assert {s.labels["service_name"] for s in srv.received()} == {"app", "unknown_service"}
