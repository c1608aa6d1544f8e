"""A window's ProfileSet -> the HTTP requests that carry it to Pyroscope.

push: ``PushRequest``s, each holding series (one per label set) with gzipped pprof raw
profiles, packed up to ``max_bytes`` per request. ingest: one ``/ingest`` request per series
profile, the labels in the ``name`` query parameter. Runs in a worker thread.

A request is one bytes payload, because the sending queue may keep it on disk: for ingest it
is the query string, a newline, then the body (``split_ingest`` takes it apart).
"""

from __future__ import annotations

import gzip
import math
import threading
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode

from collector.model import ProcessProfile, ProfileSet
from exporters.pyroscope.config import PyroscopeConfig
from exporters.pyroscope.labels import Labeler, Labels, ingest_name, ingest_value, push_value
from exporters.pyroscope.proto import PushRequest
from exporters.pyroscope.series import Piece, Stats, encode_series

SPY_NAME = "ebpfspy"


@dataclass(frozen=True, slots=True)
class Request:
    body: bytes  # what the sending queue holds and the transport posts
    samples: int  # samples of the window it carries
    profiles: int = 1  # raw profiles in it


def ingest_payload(query: list[tuple[str, str]], body: bytes) -> bytes:
    return urlencode(query).encode("ascii") + b"\n" + body


def split_ingest(payload: bytes) -> tuple[str, bytes]:
    """(query string, body) of an ingest payload."""
    query, _, body = payload.partition(b"\n")
    return query.decode("ascii"), body


@dataclass(slots=True)
class Encoded:
    requests: list[Request] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    relabel_dropped: int = 0  # samples of processes a relabel rule dropped
    labels_truncated: int = 0  # label values cut to Pyroscope's length limit

    @property
    def profiles(self) -> int:
        return sum(r.profiles for r in self.requests)


class PyroscopeEncoder:
    def __init__(self, config: PyroscopeConfig) -> None:
        self.config = config
        sanitize = push_value if config.protocol == "push" else ingest_value
        self.labeler = Labeler(config, sanitize)
        self._lock = threading.Lock()  # two pipelines may encode windows at the same time

    def series(self, ps: ProfileSet) -> tuple[dict[Labels, list[ProcessProfile]], int, int]:
        """Processes grouped by label set; samples dropped by relabelling; values truncated."""
        groups: dict[Labels, list[ProcessProfile]] = {}
        dropped = 0
        with self._lock:
            before = self.labeler.truncated
            for pp in ps.processes:
                labels = self.labeler.labels(pp.process, ps.profile_type)
                if labels is None:
                    dropped += sum(len(r.values) for r in pp.samples)
                    continue
                groups.setdefault(labels, []).append(pp)
            truncated = self.labeler.truncated - before
        return groups, dropped, truncated

    def encode(self, ps: ProfileSet) -> Encoded:
        groups, dropped, truncated = self.series(ps)
        out = Encoded(relabel_dropped=dropped, labels_truncated=truncated)
        c = self.config
        series: list[tuple[Labels, list[Piece]]] = []
        for labels, procs in groups.items():
            pieces = encode_series(
                ps,
                procs,
                max_bytes=c.max_bytes,
                max_samples=c.max_profile_samples,
                max_depth=c.max_stack_depth,
                stats=out.stats,
            )
            series.append((labels, pieces))
        if c.protocol == "push":
            out.requests = self._push(series)
        else:
            out.requests = self._ingest(ps, series)
        return out

    def _compress(self, profile: bytes) -> bytes:
        if self.config.compression == "gzip":
            return gzip.compress(profile, compresslevel=6, mtime=0)
        return profile

    def _push(self, series: list[tuple[Labels, list[Piece]]]) -> list[Request]:
        requests: list[Request] = []
        req = PushRequest()
        size = samples = count = 0

        def flush() -> None:
            nonlocal req, size, samples, count
            if count:
                requests.append(Request(req.SerializeToString(), samples, count))
            req, size, samples, count = PushRequest(), 0, 0, 0

        for labels, pieces in series:
            for piece in pieces:
                raw = self._compress(piece.profile)
                if count and size + len(raw) > self.config.max_bytes:
                    flush()
                s = req.series.add()
                for name, value in labels:
                    s.labels.add(name=name, value=value)
                s.samples.add(raw_profile=raw, ID=str(uuid.uuid4()))
                size += len(raw)
                samples += piece.samples
                count += 1
        flush()
        return requests

    def _ingest(self, ps: ProfileSet, series: list[tuple[Labels, list[Piece]]]) -> list[Request]:
        pt = ps.profile_type
        when = [
            ("from", str(ps.start_ns // 1_000_000_000)),
            ("until", str(max(math.ceil(ps.end_ns / 1e9), ps.start_ns // 1_000_000_000 + 1))),
            ("format", "pprof"),
            ("spyName", SPY_NAME),
        ]
        if pt.period_type == "cpu" and pt.period > 0:
            when.append(("sampleRate", str(round(1e9 / pt.period))))
        return [
            Request(
                ingest_payload([("name", ingest_name(labels)), *when], self._compress(p.profile)),
                p.samples,
            )
            for labels, pieces in series
            for p in pieces
        ]
