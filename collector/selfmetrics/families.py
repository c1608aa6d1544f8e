"""The collector's counters and gauges as Prometheus metric families, built at scrape time.

Two views of the same numbers:

- otelcol-style names with the component's id as label, as the OpenTelemetry Collector's
  own telemetry has them (``otelcol_receiver_accepted_samples{receiver="cpu"}``,
  ``otelcol_exporter_queue_size{exporter="otlp"}``, ...), so existing dashboards fit;
- every counter and gauge in ``Counters``, generically:
  ``collector_component_<name>_total{component="receivers/cpu"}`` (gauges without
  ``_total``), so whatever the periodic log line reports is scrapeable too.

Nothing is kept between scrapes: the families are rebuilt from a snapshot each time.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from collector import __version__
from collector.telemetry import Counters, MemoryPressure

_BAD = re.compile(r"[^a-zA-Z0-9_]")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")

# scope -> (otelcol kind label, {otelcol metric: (help, [counter names summed])})
OTELCOL_COUNTERS: dict[str, tuple[str, dict[str, tuple[str, tuple[str, ...]]]]] = {
    "receivers": (
        "receiver",
        {
            "otelcol_receiver_accepted_samples": (
                "Samples the receiver handed to every pipeline it feeds.",
                ("accepted_samples",),
            ),
            "otelcol_receiver_refused_samples": (
                "Samples a full pipeline (or memory pressure) refused.",
                ("refused_samples",),
            ),
        },
    ),
    "processors": (
        "processor",
        {
            "otelcol_processor_refused_samples": (
                "Samples a processor refused (memory_limiter above its soft limit).",
                ("refused_samples",),
            ),
            "otelcol_processor_dropped_samples": (
                "Samples a processor dropped (memory_limiter above its hard limit).",
                ("dropped_samples_hard_limit",),
            ),
        },
    ),
    "exporters": (
        "exporter",
        {
            "otelcol_exporter_sent_samples": (
                "Samples delivered (network) or written (files).",
                ("sent_samples", "samples_written"),
            ),
            "otelcol_exporter_send_failed_samples": (
                "Samples that failed to be sent: refused for good or retries exhausted.",
                ("failed_samples_permanent", "failed_samples_retries_exhausted"),
            ),
            "otelcol_exporter_enqueue_failed_samples": (
                "Samples not queued: the queue was full or the disk refused them.",
                (
                    "dropped_samples_queue_full",
                    "dropped_samples_storage_error",
                    "samples_dropped",
                ),
            ),
        },
    ),
}


def metric_name(text: str) -> str:
    name = _BAD.sub("_", text)
    return name if not name[:1].isdigit() else "_" + name


def _process_figures() -> tuple[float, float, float]:
    """(cpu seconds, rss bytes, uptime seconds) of this process."""
    t = os.times()
    with open("/proc/self/statm", "rb") as f:
        rss = int(f.read().split()[1]) * _PAGE
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start_ticks = int(fields[19])  # field 22 of stat, counted after "pid (comm)"
    with open("/proc/uptime", "rb") as f:
        boot_uptime = float(f.read().split()[0])
    return t.user + t.system, float(rss), max(boot_uptime - start_ticks / _TICK, 0.0)


class CollectorMetrics(Collector):
    """A prometheus_client collector over the runtime's Counters and state."""

    def __init__(
        self,
        counters: Counters,
        pressure: MemoryPressure | None = None,
        ready: object | None = None,
    ) -> None:
        self.counters = counters
        self.pressure = pressure
        self.ready = ready  # anything with a bool ``ready`` attribute
        self.started = time.time()

    def collect(self) -> Iterator[Metric]:
        snap = self.counters.snapshot()
        gauges = self.counters.gauges()
        yield from self._otelcol(snap, gauges)
        yield from self._generic(snap, gauges)
        yield from self._process()

    def _otelcol(
        self, snap: dict[str, dict[str, int]], gauges: dict[str, dict[str, float]]
    ) -> Iterator[Metric]:
        for scope, (label, metrics) in OTELCOL_COUNTERS.items():
            for name, (doc, sources) in metrics.items():
                fam = CounterMetricFamily(name, doc, labels=[label])
                for comp, values in sorted(snap.items()):
                    s, _, cid = comp.partition("/")
                    if s == scope:
                        fam.add_metric([cid], sum(values.get(src, 0) for src in sources))
                yield fam
        size = GaugeMetricFamily(
            "otelcol_exporter_queue_size",
            "Requests waiting in the sending queue.",
            labels=["exporter"],
        )
        cap = GaugeMetricFamily(
            "otelcol_exporter_queue_capacity", "Most requests the queue holds.", labels=["exporter"]
        )
        for comp, values in sorted(gauges.items()):
            s, _, cid = comp.partition("/")
            if s != "exporters":
                continue
            # The sending queue of a network exporter, else the runtime's queue in front of it.
            if "queue_size" in values:
                size.add_metric([cid], values["queue_size"])
                cap.add_metric([cid], values.get("queue_capacity", 0.0))
            elif "input_queue_size" in values:
                size.add_metric([cid], values["input_queue_size"])
                cap.add_metric([cid], values.get("input_queue_capacity", 0.0))
        yield size
        yield cap

    def _generic(
        self, snap: dict[str, dict[str, int]], gauges: dict[str, dict[str, float]]
    ) -> Iterator[Metric]:
        counter_fams: dict[str, CounterMetricFamily] = {}
        for comp, values in sorted(snap.items()):
            for name, value in sorted(values.items()):
                key = metric_name(name)
                fam = counter_fams.get(key)
                if fam is None:
                    fam = counter_fams[key] = CounterMetricFamily(
                        f"collector_component_{key}",
                        f"The collector's {name!r} counter, per component.",
                        labels=["component"],
                    )
                fam.add_metric([comp], value)
        yield from counter_fams.values()
        gauge_fams: dict[str, GaugeMetricFamily] = {}
        for comp, values in sorted(gauges.items()):
            for name, value in sorted(values.items()):
                key = metric_name(name)
                if key in counter_fams:  # never one name for two families
                    key += "_current"
                fam = gauge_fams.get(key)
                if fam is None:
                    fam = gauge_fams[key] = GaugeMetricFamily(
                        f"collector_component_{key}",
                        f"The collector's {name!r} gauge, per component.",
                        labels=["component"],
                    )
                fam.add_metric([comp], value)
        yield from gauge_fams.values()

    def _process(self) -> Iterator[Metric]:
        cpu, rss, uptime = _process_figures()
        yield CounterMetricFamily(
            "otelcol_process_cpu_seconds", "User and system CPU time of the process.", value=cpu
        )
        yield GaugeMetricFamily(
            "otelcol_process_memory_rss", "Resident set size of the process, bytes.", value=rss
        )
        yield CounterMetricFamily(
            "otelcol_process_uptime", "Seconds since the process started.", value=uptime
        )
        info = GaugeMetricFamily("collector_build_info", "Version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        if self.pressure is not None:
            yield GaugeMetricFamily(
                "collector_memory_pressure_level",
                "0 under the memory_limiter's soft limit, 1 above it, 2 above the hard one.",
                value=self.pressure.level,
            )
        if self.ready is not None:
            yield GaugeMetricFamily(
                "collector_ready",
                "1 once every component has started (what /readyz answers).",
                value=1.0 if getattr(self.ready, "ready", False) else 0.0,
            )
