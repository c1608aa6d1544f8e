"""A real TraceService server on loopback that records what it gets, and the OTel SDK span
processor that puts the kernel thread id on spans (what the correlate processor matches)."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

import grpc
import grpc.aio
from opentelemetry.context import Context
from opentelemetry.proto.collector.profiles.v1development import profiles_service_pb2 as psvc
from opentelemetry.proto.collector.profiles.v1development import (
    profiles_service_pb2_grpc as svc_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tsvc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tsvc_grpc
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from tests.support.otlp_servers import Recorder


class ThreadIdSpanProcessor(SpanProcessor):
    """thread.id = the kernel's tid (threading.get_native_id), as CPU samples carry it;
    threading.get_ident is a pthread pointer and would never match."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        span.set_attribute("thread.id", threading.get_native_id())

    def on_end(self, span: ReadableSpan) -> None:
        pass


@dataclass
class TraceRecorder:
    requests: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans(self) -> list[tuple[bytes, str]]:
        """(span_id, name) of every span received, in order."""
        out = []
        with self.lock:
            reqs = list(self.requests)
        for body in reqs:
            req = tsvc.ExportTraceServiceRequest.FromString(body)
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    out.extend((bytes(s.span_id), s.name) for s in ss.spans)
        return out


class _Servicer(tsvc_grpc.TraceServiceServicer):
    def __init__(self, rec: TraceRecorder) -> None:
        self.rec = rec

    async def Export(self, request, context):
        with self.rec.lock:
            self.rec.requests.append(request.SerializeToString())
        return tsvc.ExportTraceServiceResponse()


class GrpcTraceServer:
    def __init__(self, rec: TraceRecorder) -> None:
        self.rec = rec
        self.port = 0
        self.server: grpc.aio.Server | None = None

    async def start(self) -> None:
        self.server = grpc.aio.server()
        tsvc_grpc.add_TraceServiceServicer_to_server(_Servicer(self.rec), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=None)
            self.server = None


class _Profiles(svc_grpc.ProfilesServiceServicer):
    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    async def Export(self, request, context):
        self.rec.record(request, {})
        return psvc.ExportProfilesServiceResponse()


class Backend:
    """One gRPC server with ProfilesService and TraceService (what an otlp exporter listed in
    a profiles and a traces pipeline talks to), on its own loop in a thread, for tests that
    run the collector as a process."""

    def __init__(self) -> None:
        self.profiles = Recorder()
        self.traces = TraceRecorder()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: grpc.aio.Server | None = None

    async def _start(self) -> None:
        self._server = grpc.aio.server()
        svc_grpc.add_ProfilesServiceServicer_to_server(_Profiles(self.profiles), self._server)
        tsvc_grpc.add_TraceServiceServicer_to_server(_Servicer(self.traces), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    def __enter__(self) -> Backend:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(None), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
