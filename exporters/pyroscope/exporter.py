"""The pyroscope exporter: the shared batching exporter (collector.sending), with one window
becoming several requests (series packed per request, split at Pyroscope's limits)."""

from __future__ import annotations

from collector.component import CreateSettings
from collector.model import ProfileSet
from collector.sending.exporter import BatchingProfileExporter
from exporters.pyroscope.config import PyroscopeConfig
from exporters.pyroscope.encode import PyroscopeEncoder
from exporters.pyroscope.transport import PyroscopeTransport


def _unused(ps: ProfileSet) -> bytes:  # encode_requests below replaces the one-request path
    raise AssertionError("pyroscope encodes windows with encode_requests")


class PyroscopeExporter(BatchingProfileExporter):
    """Counters: those of the otlp exporter (a request is one HTTP POST here), plus
    profiles_encoded, profiles_split, samples_stack_truncated, dropped_samples_relabel,
    dropped_samples_too_large, label_values_truncated."""

    transport: PyroscopeTransport

    def __init__(self, settings: CreateSettings, config: PyroscopeConfig) -> None:
        self.encoder = PyroscopeEncoder(config)
        self.max_bytes = config.max_bytes
        super().__init__(settings, config, PyroscopeTransport(config), _unused)

    def encode_requests(self, ps: ProfileSet) -> list[tuple[bytes, int]]:
        """Runs in a worker thread (the base class's): queueing, persistence, retries, drops
        and their counters stay the base class's, counted per request."""
        enc = self.encoder.encode(ps)
        s = enc.stats
        self._count("profiles_encoded", enc.profiles)
        self._count("profiles_split", s.split_profiles)
        self._count("samples_stack_truncated", s.truncated_samples)
        self._count("dropped_samples_relabel", enc.relabel_dropped)
        self._count("dropped_samples_too_large", s.too_large_samples)
        self._count("label_values_truncated", enc.labels_truncated)
        if s.too_large_samples:
            self.log.error(
                "%s: one stack's profile alone is over max_bytes=%d; dropped samples=%d "
                "(counted as dropped_samples_too_large)",
                self.id,
                self.max_bytes,
                s.too_large_samples,
            )
        return [(req.body, req.samples) for req in enc.requests]
