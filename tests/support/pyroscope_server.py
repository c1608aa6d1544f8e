"""A Pyroscope stand-in on 127.0.0.1: the documented Push (Connect) and /ingest endpoints.

It decodes every body with its own descriptors (built here from Pyroscope's field numbers,
not from the exporter's code) and checks what Pyroscope's distributor checks
(pkg/validation/validate.go): labels sorted-unique after sorting, names ``[a-zA-Z_][a-zA-Z0-9_]*``,
a valid ``__name__``, a ``service_name``, at most 30 labels, length limits; profiles within
4 MiB uncompressed, 16,000 samples, stack depth 1000, ids not 0, sample types without ``-``.
A request that breaks a rule gets Pyroscope's answer (400, Connect ``invalid_argument``) and
the problem is recorded. /ingest is read as Pyroscope's ingest handler reads it: ``name`` is
``app{k=v,...}``, the type (``__name__``) comes from the pprof's sample types.

Runs its own event loop in a thread, so synchronous tests (a collector subprocess) and
asyncio tests can both use it: ``with PyroscopeServer() as srv: ... srv.url``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import json
import re
import threading
from dataclasses import dataclass, field
from ssl import SSLContext
from typing import Any

from aiohttp import web
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from tests.support.encoding_pprof import decode as decode_pprof

MAX_PROFILE_BYTES = 4 * 1024 * 1024
MAX_SAMPLES = 16_000
MAX_DEPTH = 1000
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
INGEST_APP = re.compile(r"[a-zA-Z0-9_./-]+")
INGEST_LABEL = re.compile(r"[a-zA-Z0-9_.]+")


@functools.cache
def push_request_class() -> Any:
    F = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(name="test_push.proto", package="tpush")
    specs = {
        "LabelPair": [("name", 1, F.TYPE_STRING, ""), ("value", 2, F.TYPE_STRING, "")],
        "RawSample": [("raw_profile", 1, F.TYPE_BYTES, ""), ("ID", 2, F.TYPE_STRING, "")],
        "RawProfileSeries": [
            ("labels", 1, F.TYPE_MESSAGE, "LabelPair"),
            ("samples", 2, F.TYPE_MESSAGE, "RawSample"),
        ],
        "PushRequest": [("series", 1, F.TYPE_MESSAGE, "RawProfileSeries")],
    }
    fd.syntax = "proto3"
    for msg, fields in specs.items():
        m = fd.message_type.add(name=msg)
        for name, number, typ, ref in fields:
            label = F.LABEL_REPEATED if ref else F.LABEL_OPTIONAL
            f = m.field.add(name=name, number=number, type=typ, label=label)
            if ref:
                f.type_name = f".tpush.{ref}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tpush.PushRequest"))


@dataclass
class Series:
    """One raw profile as Pyroscope would store it: its series labels and the profile."""

    protocol: str  # "push" or "ingest"
    labels: dict[str, str]
    profile: Any  # decoded perftools.profiles.Profile (tests/support/encoding_pprof)
    raw: bytes  # the uncompressed pprof
    tenant: str
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class Answer:
    status: int = 200
    code: str = ""
    retry_after: str | None = None


def connect_error(status: int, code: str, message: str) -> web.Response:
    body = json.dumps({"code": code, "message": message})
    return web.Response(status=status, text=body, content_type="application/json")


def label_problems(pairs: list[tuple[str, str]]) -> list[str]:
    if not pairs:
        return ["no labels"]
    problems = []
    names = sorted(n for n, _ in pairs)
    if len(names) != len(set(names)):
        problems.append(f"duplicate label names {names}")
    if len(pairs) > 30:
        problems.append(f"{len(pairs)} labels > 30")
    d = dict(pairs)
    if not METRIC_NAME.fullmatch(d.get("__name__", "")):
        problems.append(f"invalid metric name {d.get('__name__')!r}")
    if not d.get("service_name"):
        problems.append("service name is not provided")
    for n, v in pairs:
        if len(n) > 1024 or len(v.encode()) > 2048:
            problems.append(f"label {n} too long")
        if not LABEL_NAME.fullmatch(n):
            problems.append(f"invalid label name {n!r}")
    return problems


def profile_problems(raw: bytes, p: Any) -> list[str]:
    problems = []
    if len(raw) > MAX_PROFILE_BYTES:
        problems.append(f"profile {len(raw)} bytes > {MAX_PROFILE_BYTES}")
    if len(p.sample) > MAX_SAMPLES:
        problems.append(f"{len(p.sample)} samples > {MAX_SAMPLES}")
    if not p.string_table or p.string_table[0] != "":
        problems.append("string_table[0] is not empty")
    n = len(p.string_table)
    locs = {loc.id for loc in p.location}
    fns = {f.id for f in p.function}
    maps = {m.id for m in p.mapping}
    if 0 in locs or 0 in fns or 0 in maps:
        problems.append("id 0 in a table")
    for st in p.sample_type:
        if not 0 <= st.type < n or "-" in p.string_table[st.type]:
            problems.append("bad sample type")
    for s in p.sample:
        if len(s.location_id) > MAX_DEPTH:
            problems.append(f"stack depth {len(s.location_id)} > {MAX_DEPTH}")
        if any(i not in locs for i in s.location_id):
            problems.append("sample references a missing location")
        for lb in s.label:
            if not 0 <= lb.key < n or not 0 <= lb.str < n:
                problems.append("label string index out of range")
    for loc in p.location:
        if loc.mapping_id and loc.mapping_id not in maps:
            problems.append("location references a missing mapping")
        if any(ln.function_id not in fns for ln in loc.line):
            problems.append("line references a missing function")
    for f in p.function:
        if not all(0 <= i < n for i in (f.name, f.system_name, f.filename)):
            problems.append("function string index out of range")
    return sorted(set(problems))


def metric_name(p: Any) -> str:
    """Pyroscope's ingest handler (pkg/og/convert/pprof) names the type from sample types."""
    types = [p.string_table[st.type] for st in p.sample_type]
    if "wall" in types:
        return "wall"
    for st in types:
        if "cpu" in st:
            return "process_cpu"
        if "alloc_" in st or "inuse_" in st or st in ("space", "objects"):
            return "memory"
    return types[-1] if types else ""


def parse_ingest_name(name: str) -> tuple[str, dict[str, str]]:
    """labelset.Parse: ``app{k=v,k2=v2}``; values end at ``,`` or ``}`` and are trimmed."""
    app, _, rest = name.partition("{")
    app = app.strip()
    if not INGEST_APP.fullmatch(app):
        raise ValueError(f"invalid service name {app!r}")
    labels: dict[str, str] = {}
    for part in rest.rstrip("}").split(","):
        if not part:
            continue
        k, eq, v = part.partition("=")
        if not eq or not INGEST_LABEL.fullmatch(k.strip()):
            raise ValueError(f"invalid label {part!r}")
        labels[k.strip()] = v.strip()
    return app, labels


class PyroscopeServer:
    def __init__(
        self,
        *,
        basic_auth: tuple[str, str] | None = None,
        bearer_token: str | None = None,
        script: list[Answer] | None = None,
        ssl: SSLContext | None = None,
    ) -> None:
        self.ssl = ssl
        self.basic_auth = basic_auth
        self.bearer_token = bearer_token
        self.script = list(script or [])
        self.series: list[Series] = []
        self.problems: list[str] = []
        self.attempts = 0  # every request, answered 200 or not
        self.headers: list[dict[str, str]] = []
        self.port = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://127.0.0.1:{self.port}"

    # -- checks ------------------------------------------------------------------------------
    def _auth_ok(self, request: web.Request) -> bool:
        got = request.headers.get("Authorization", "")
        if self.basic_auth is not None:
            want = base64.b64encode(":".join(self.basic_auth).encode()).decode()
            return got == f"Basic {want}"
        if self.bearer_token is not None:
            return got == f"Bearer {self.bearer_token}"
        return True

    def _gate(self, request: web.Request) -> web.Response | None:
        with self._lock:
            self.attempts += 1
            self.headers.append(dict(request.headers))
            answer = self.script.pop(0) if self.script else None
        if not self._auth_ok(request):
            return connect_error(401, "unauthenticated", "invalid credentials")
        if answer is not None and answer.status != 200:
            r = connect_error(answer.status, answer.code or "unavailable", "scripted")
            if answer.retry_after is not None:
                r.headers["Retry-After"] = answer.retry_after
            return r
        return None

    def _accept(self, batch: list[Series]) -> web.Response | None:
        problems = []
        for s in batch:
            problems += label_problems(sorted(s.labels.items()))
            problems += profile_problems(s.raw, s.profile)
        with self._lock:
            if problems:
                self.problems += problems
                return connect_error(400, "invalid_argument", "; ".join(problems))
            self.series += batch
        return None

    # -- handlers ----------------------------------------------------------------------------
    async def _push(self, request: web.Request) -> web.Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        if request.headers.get("Content-Type") != "application/proto":
            return connect_error(415, "invalid_argument", "content-type must be application/proto")
        req = push_request_class()()
        req.ParseFromString(await request.read())
        tenant = request.headers.get("X-Scope-OrgID", "")
        batch = []
        for s in req.series:
            pairs = [(lb.name, lb.value) for lb in s.labels]
            if len({n for n, _ in pairs}) != len(pairs):
                with self._lock:
                    self.problems.append(f"duplicate label names {pairs}")
                return connect_error(400, "invalid_argument", "duplicate label names")
            for sample in s.samples:
                raw = sample.raw_profile
                if raw[:2] == b"\x1f\x8b":
                    raw = gzip.decompress(raw)
                batch.append(Series("push", dict(pairs), decode_pprof(raw), raw, tenant))
        refused = self._accept(batch)
        return refused or web.Response(body=b"", content_type="application/proto")

    async def _ingest(self, request: web.Request) -> web.Response:
        refused = self._gate(request)
        if refused is not None:
            return refused
        q = dict(request.query)
        try:
            app, labels = parse_ingest_name(q.get("name", ""))
        except ValueError as e:
            return web.Response(status=400, text=f"name: {e}")
        if q.get("format") != "pprof" or not q.get("from") or not q.get("until"):
            return web.Response(status=400, text="expected format=pprof, from and until")
        raw = await request.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        profile = decode_pprof(raw)
        series_labels = {
            **{k: v for k, v in labels.items() if not k.startswith("__")},
            "__name__": metric_name(profile),
            "service_name": app,
            "pyroscope_spy": q.get("spyName", "unknown"),
        }
        tenant = request.headers.get("X-Scope-OrgID", "")
        refused = self._accept([Series("ingest", series_labels, profile, raw, tenant, q)])
        return refused or web.Response(text="")

    # -- lifecycle ---------------------------------------------------------------------------
    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/push.v1.PusherService/Push", self._push)
        app.router.add_post("/ingest", self._ingest)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def start(self) -> PyroscopeServer:
        started = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            loop.run_until_complete(self._start())
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())  # type: ignore[union-attr]
            loop.close()

        self._thread = threading.Thread(target=run, name="pyroscope-server", daemon=True)
        self._thread.start()
        started.wait()
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop = None

    def __enter__(self) -> PyroscopeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def received(self) -> list[Series]:
        with self._lock:
            return list(self.series)
