"""The pyroscope exporter: the shared batching exporter (collector.sending), with one window
becoming several requests (series packed per request, split at Pyroscope's limits)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from collector.component import CreateSettings
from collector.model import ProfileSet, ProfileType
from collector.sending.exporter import BatchingProfileExporter
from exporters.pyroscope.config import PyroscopeConfig
from exporters.pyroscope.encode import Encoded, PyroscopeEncoder
from exporters.pyroscope.transport import PyroscopeTransport


@dataclass(frozen=True, slots=True)
class OneRequest:
    """One of a window's requests, already encoded. The base class's per-window path takes
    it like a window (it reads only these fields), so queueing, persistence, retries, drops
    and their counters stay the base class's, counted per request."""

    profile_type: ProfileType
    payload: bytes
    sample_count: int
    dropped_samples: int = 0


def _payload(one: OneRequest) -> bytes:
    return one.payload


class PyroscopeExporter(BatchingProfileExporter):
    """Counters: those of the otlp exporter (a request is one HTTP POST here), plus
    profiles_encoded, profiles_split, samples_stack_truncated, dropped_samples_relabel,
    dropped_samples_too_large, label_values_truncated."""

    transport: PyroscopeTransport

    def __init__(self, settings: CreateSettings, config: PyroscopeConfig) -> None:
        self.encoder = PyroscopeEncoder(config)
        self.max_bytes = config.max_bytes
        super().__init__(settings, config, PyroscopeTransport(config), _payload)

    async def _send_set(self, ps: ProfileSet) -> None:
        n = ps.sample_count
        self._count("dropped_samples_window_full", ps.dropped_samples)
        try:
            enc: Encoded = await asyncio.to_thread(self.encoder.encode, ps)
        except Exception:  # a bug in the encoder: count the window, keep the exporter
            self._count("dropped_samples_encode", n)
            self.log.exception("%s: encoding failed samples=%d", self.id, n)
            return
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
        for req in enc.requests:
            one = OneRequest(ps.profile_type, req.body, req.samples)
            await super()._send_set(one)  # type: ignore[arg-type]
