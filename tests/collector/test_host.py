"""The Host the runtime hands each kind of component."""

from __future__ import annotations

from collector.host import Host, ScopedHost


def test_scoped_hosts_keep_same_named_components_apart_and_share_services() -> None:
    host = Host()
    receivers, exporters = ScopedHost(host, "receivers"), ScopedHost(host, "exporters")
    receivers.counters.add("otlp", "received_samples", 2)
    exporters.counters.add("otlp", "sent_samples", 5)
    assert host.counters.snapshot() == {
        "receivers/otlp": {"received_samples": 2},
        "exporters/otlp": {"sent_samples": 5},
    }
    assert receivers.counters.get("otlp", "received_samples") == 2
    assert receivers.processes is exporters.processes is host.processes
    seen: list[tuple[str, str]] = []
    host.on_fatal(lambda cid, msg: seen.append((cid, msg)))
    receivers.report_fatal("cpu", "reader died")
    assert seen == [("receivers/cpu", "reader died")]
    assert exporters.fatal_error == host.fatal_error == "receivers/cpu: reader died"
