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


def test_shared_services_are_made_once_refcounted_and_closed_by_the_last_release() -> None:
    host = Host()
    made: list[object] = []
    closed: list[object] = []

    def make() -> object:
        made.append(object())
        return made[-1]

    a = ScopedHost(host, "processors").shared("tables", make, closed.append)
    b = ScopedHost(host, "receivers").shared("tables", make, closed.append)
    assert a is b and len(made) == 1  # one object for every holder, whatever its kind
    other = host.shared(("tables", "other settings"), make, closed.append)
    assert other is not a and len(made) == 2
    host.release("tables")
    assert closed == []  # one holder left
    host.release("tables")
    assert closed == [a]
    host.release("tables")  # more releases than holds: harmless
    assert closed == [a]
    again = host.shared("tables", make, closed.append)
    assert again is not a  # made anew after the last release
    host.close_shared()  # shutdown closes whatever was not released
    assert closed == [a, other, again] or closed == [a, again, other]
    host.close_shared()
    assert len(closed) == 3
